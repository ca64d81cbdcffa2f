"""Journey activities: record a run's start and end, time and send its emails.

The journey workflow runs all but ``prepare_email`` as local activities. The work is in
``tailor/journeys/`` (runs, timing, emails); an email goes through the send pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from activities.errors import not_found, temporal_failures
from tailor.db import Database
from tailor.errors import NotFound
from tailor.journeys.emails import JourneyEmails
from tailor.journeys.runs import end_run, start_run
from tailor.journeys.timing import JourneyTiming
from tailor.payloads import (
    JourneyEnd,
    JourneyPlan,
    JourneySend,
    JourneySendResult,
    JourneyStart,
    SendTimePlan,
)


@dataclass(frozen=True)
class JourneyActivities:
    db: Database
    emails: JourneyEmails
    timing: JourneyTiming

    @activity.defn
    async def start_journey(self, start: JourneyStart) -> JourneyPlan:
        """Pin the definition version this run keeps, and record the run."""
        with temporal_failures():
            return await start_run(self.db, start)

    @activity.defn
    async def plan_send_time(self, send: JourneySend) -> SendTimePlan:
        """The person's best local hour and how long until it comes round."""
        with temporal_failures():
            return await self.timing.best_hour(send.tenant_id, send.contact_id)

    @activity.defn
    async def prepare_email(self, send: JourneySend) -> bool:
        """Write the email ahead, so the send after a wait is instant. Only a missing campaign
        is mapped: anything else fails this optimisation plainly (it has two attempts)."""
        try:
            return await self.emails.prepare(send)
        except NotFound as exc:
            raise not_found(exc) from exc

    @activity.defn
    async def send_email(self, send: JourneySend) -> JourneySendResult:
        with temporal_failures():
            return await self.emails.send(send, activity.heartbeat)

    @activity.defn
    async def finish_journey(self, end: JourneyEnd) -> None:
        await end_run(self.db, end)
