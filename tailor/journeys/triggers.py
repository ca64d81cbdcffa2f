"""The trigger agent: turns each new event into journey starts and signals.

For every event with a known person it evaluates the tenant's trigger rules for that event
against the person's last 7 days of events and their features, signal-with-starts the
journeys whose rules hold, and forwards the event to the person's running journeys (where an
exit event, a purchase say, ends them). An event whose processing fails goes to the dead-letter
store, from where the API replays it; replay is safe because journeys de-duplicate event ids.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from tailor.db import Database
from tailor.journeys.definitions import journey_workflow_id
from tailor.models import TriggerRule
from tailor.payloads import JourneyInput, JourneySignal
from tailor.store.events import StoredEvent
from tailor.store.journeys import (
    add_dead_letter,
    event_counts,
    journey_keys,
    mark_replayed,
    rules_for,
)
from tailor.store.profiles import order_count

log = logging.getLogger(__name__)

WINDOW = timedelta(days=7)


class JourneyStarter(Protocol):
    """What the agent needs of Temporal (``tailor.temporal.journeys.JourneyControl``): passed
    in, so that journeys, a domain package, never import the layer that runs workflows."""

    async def trigger(self, journey: JourneyInput, event_name: str) -> str: ...

    async def forward(self, workflow_ids: list[str], signal: JourneySignal) -> int: ...


@dataclass(frozen=True)
class Outcome:
    started: list[str]  # journey keys signal-with-started
    forwarded: int  # running journeys the event ended (or reached)


class TriggerAgent:
    def __init__(self, db: Database, journeys: Callable[[], Awaitable[JourneyStarter]]) -> None:
        self._db = db
        self._journeys = journeys

    async def on_events(self, tenant_id: str, events: Sequence[StoredEvent]) -> None:
        """Process new events; failures go to the dead-letter store, never to the caller (the
        events are stored: the sender must not retry them)."""
        for event in events:
            if event.contact_id is None:
                continue  # nobody to start a journey for yet
            try:
                await self.process(tenant_id, event)
            except Exception as exc:  # noqa: BLE001 - every failure is dead-lettered
                log.warning("event %s: trigger processing failed (%s); dead-lettered",
                            event.id, type(exc).__name__)  # fmt: skip
                async with self._db.write() as conn:
                    await add_dead_letter(conn, tenant_id=tenant_id, event_id=event.id,
                                          error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    async def replay(self, tenant_id: str, event: StoredEvent) -> Outcome:
        """Process a dead-lettered event again; raises if it fails again (attempts counted)."""
        try:
            outcome = await self.process(tenant_id, event)
        except Exception as exc:
            async with self._db.write() as conn:
                await add_dead_letter(
                    conn,
                    tenant_id=tenant_id,
                    event_id=event.id,
                    error=f"{type(exc).__name__}: {exc}",
                )
            raise
        async with self._db.write() as conn:
            await mark_replayed(conn, event_id=event.id)
        return outcome

    async def process(self, tenant_id: str, event: StoredEvent) -> Outcome:
        assert event.contact_id is not None
        async with self._db.read() as conn:
            rules = await rules_for(conn, tenant_id=tenant_id, events={event.name})
            matching = [r for r in rules if await self._holds(conn, r, event)]
            # By workflow id, not by run rows: a run started a moment ago may not have
            # recorded itself yet, and its exit event must still reach it.
            ending = await journey_keys(conn, tenant_id=tenant_id, exit_on=event.name)
        if not matching and not ending:
            return Outcome([], 0)
        control = await self._journeys()
        started: list[str] = []
        triggered: set[str] = set()
        for rule in matching:
            if rule.journey_key in triggered:
                continue
            journey = JourneyInput(tenant_id, event.contact_id, rule.journey_key, event.name,
                                   event.id)  # fmt: skip
            triggered.add(await control.trigger(journey, event.name))
            started.append(rule.journey_key)
        others = [journey_workflow_id(tenant_id, key, event.contact_id) for key in ending]
        reached = await control.forward(
            [w for w in others if w not in triggered], JourneySignal(event.name, event.id)
        )
        return Outcome(started, reached)

    async def _holds(self, conn: AsyncConnection, rule: TriggerRule, event: StoredEvent) -> bool:
        """The rule's conditions, over the 7 days up to the event and the person's features."""
        assert event.contact_id is not None
        when = event.occurred_at
        if rule.conditions.get("min_count", 1) > 1:
            counts = await event_counts(
                conn,
                contact_id=event.contact_id,
                names=[event.name],
                since=when - WINDOW,
                until=when,
            )
            if counts.get(event.name, 0) < rule.conditions["min_count"]:
                return False
        unless = rule.conditions.get("unless") or []
        if unless:
            hours = timedelta(hours=rule.conditions.get("unless_within_hours", 24))
            recent = await event_counts(conn, contact_id=event.contact_id, names=unless,
                                        since=when - hours, until=when)  # fmt: skip
            if any(recent.values()):
                return False
        wanted_orders = rule.conditions.get("order_count_in") or []
        if wanted_orders:
            orders = await order_count(conn, contact_id=event.contact_id)
            if orders not in wanted_orders:
                return False
        return True
