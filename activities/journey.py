"""Journey activities: load a run's definition, time and send its emails, record its end.

A journey email is delivered by the same path as a campaign chunk (``ChunkActivities.deliver``)
on the email's own campaign row, with the journey run as the send's occurrence: a retry, a
restart or a replayed trigger never sends one run's email twice.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col
from temporalio import activity

from activities.campaign_chunk import ChunkActivities
from activities.errors import journey_not_found, not_found
from tailor.db import Database
from tailor.errors import NotFound
from tailor.models import (
    ConsentStatus,
    Contact,
    Event,
    JourneyDefinition,
    JourneyRun,
    Send,
    SendStatus,
    Tenant,
    utcnow,
)
from tailor.payloads import (
    JourneyEnd,
    JourneyPlan,
    JourneySend,
    JourneySendResult,
    JourneyStart,
    JourneyStepPlan,
    SendTimePlan,
)
from tailor.personalise.exemplars import ClusterExemplars
from tailor.personalise.generation import ClusterGenerator, clusters_of
from tailor.profiles.loader import ProfileLoader
from tailor.send_time import BestHour, best_hour, delay_until_hour, local_hours, zone
from tailor.sending.context import CampaignContext, CampaignContexts
from tailor.store.campaigns import DELIVERED
from tailor.store.consent import current_consent
from tailor.store.journeys import finish_run, latest_definition, record_run
from tailor.store.sends import sends_for

# Which occasion a milestone email celebrates, by the event that started the journey.
OCCASIONS = {
    "milestone.birthday": "birthday",
    "milestone.anniversary": "anniversary",
    "order.completed": "nth_order",
}
OPEN_HISTORY = timedelta(days=90)
PRIOR_TTL_S = 3600.0
MIN_PEERS = 20


class JourneyActivities:
    def __init__(
        self,
        db: Database,
        contexts: CampaignContexts,
        chunks: ChunkActivities,
        generator: ClusterGenerator,
        profiles: ProfileLoader,
        exemplars: ClusterExemplars,
    ) -> None:
        self._db = db
        self._contexts = contexts
        self._chunks = chunks
        self._generator = generator
        self._profiles = profiles
        self._exemplars = exemplars
        self._priors: dict[tuple[str, str], tuple[float, list[int]]] = {}

    @activity.defn
    async def start_journey(self, start: JourneyStart) -> JourneyPlan:
        """Pin the definition version this run keeps, and record the run."""
        journey = start.journey
        async with self._db.write() as conn:
            definition = await latest_definition(conn, journey.tenant_id, journey.journey_key)
            if definition is None or definition.id is None:
                raise journey_not_found(
                    f"journey {journey.journey_key!r} is not defined for tenant "
                    f"{journey.tenant_id!r}: install it (POST /v1/journeys/builtins)"
                )
            await record_run(
                conn,
                JourneyRun(
                    id=start.run_id, tenant_id=journey.tenant_id, contact_id=journey.contact_id,
                    journey_key=journey.journey_key, definition_id=definition.id,
                    workflow_id=start.workflow_id,
                ),
            )  # fmt: skip
            consent = await current_consent(conn, [journey.contact_id])
        return _plan(definition, consent.get(journey.contact_id) == ConsentStatus.GRANTED)

    @activity.defn
    async def plan_send_time(self, send: JourneySend) -> SendTimePlan:
        """The person's best local hour and how long until it comes round: the hour the daily
        job learned, else one from their own opens with a prior from people in their timezone."""
        now = utcnow()
        async with self._db.read() as conn:
            contact = await _contact(conn, send.contact_id)
            tz = zone(contact.timezone)
            if contact.best_send_hour is not None:
                chosen = BestHour(contact.best_send_hour, "learned daily from when they open email")
            else:
                own = await _open_times(conn, [col(Event.contact_id) == send.contact_id], now)
                peers = await self._peer_hours(conn, send.tenant_id, contact.timezone)
                chosen = best_hour(local_hours(own, tz), peers)
        delay = delay_until_hour(now, tz, chosen.hour)
        return SendTimePlan(int(delay.total_seconds()), chosen.hour, chosen.reason)

    async def _peer_hours(self, conn: AsyncConnection, tenant_id: str, timezone: str) -> list[int]:
        """Best hours of people in the same tenant and timezone (as the daily job learned
        them), at most 200 in proportion; cached for an hour, as they change daily."""
        key = (tenant_id, timezone)
        cached = self._priors.get(key)
        if cached is not None and time.monotonic() - cached[0] < PRIOR_TTL_S:
            return cached[1]
        rows = await conn.execute(
            select(Contact.best_send_hour, func.count())  # type: ignore[call-overload]
            .where(
                col(Contact.tenant_id) == tenant_id,
                col(Contact.timezone) == timezone,
                col(Contact.best_send_hour).is_not(None),
            )
            .group_by(col(Contact.best_send_hour))
        )
        counts = dict(rows.all())
        total = sum(counts.values())
        hours = (
            [h for h, n in counts.items() for _ in range(round(200 * n / total))] if total else []
        )
        self._priors[key] = (time.monotonic(), hours)
        return hours

    @activity.defn
    async def prepare_email(self, send: JourneySend) -> bool:
        """Write the email ahead (LLM tiers), so the send after a wait is instant; the content
        lands in the generation cache the send reads. False: nothing to write ahead."""
        if not self._generator.enabled:
            return False
        ctx = await self._context(send)
        profiles = await self._profiles.load([send.contact_id])
        if send.contact_id not in profiles:
            return False
        now = utcnow()
        clusters = clusters_of([profiles[send.contact_id].contact], ctx.catalog, now)
        retrievals = await self._exemplars.for_clusters(ctx, set(clusters.values()))
        return bool(await self._generator.for_contacts(ctx, clusters, now, retrievals))

    @activity.defn
    async def send_email(self, send: JourneySend) -> JourneySendResult:
        ctx = await self._context(send)
        async with self._db.read() as conn:
            mine = await sends_for(
                conn,
                campaign_id=send.campaign_id,
                contact_ids=[send.contact_id],
                occurrence=send.run_id,
            )
            if mine and mine[0][2] in DELIVERED:
                return JourneySendResult("sent")  # an earlier attempt delivered it
            contact = await _contact(conn, send.contact_id)
            # Read now, not from the cached context: a tenant may raise it for waiting sends.
            limit = await conn.scalar(
                select(col(Tenant.daily_email_limit)).where(col(Tenant.id) == send.tenant_id)
            )
            retry_after = await _over_daily_limit(conn, contact, limit or 1)
        if retry_after is not None:
            return JourneySendResult("throttled", int(retry_after.total_seconds()) + 1)
        journey = {"journey": send.journey_key, "step": send.step, "trigger": send.trigger,
                   "run_id": send.run_id,
                   "send_time": send.send_time_reason or "as soon as due"}  # fmt: skip
        await self._chunks.deliver(replace(ctx, explain_extra={"journey": journey}),
                                   [send.contact_id], [], occurrence=send.run_id,
                                   review=False)  # fmt: skip
        async with self._db.read() as conn:
            mine = await sends_for(
                conn,
                campaign_id=send.campaign_id,
                contact_ids=[send.contact_id],
                occurrence=send.run_id,
            )
        status = mine[0][2] if mine else None
        if status in DELIVERED:
            return JourneySendResult("sent")
        return JourneySendResult("suppressed" if status == SendStatus.SUPPRESSED else "failed")

    @activity.defn
    async def finish_journey(self, end: JourneyEnd) -> None:
        async with self._db.write() as conn:
            await finish_run(conn, end.run_id, end.status, end.reason, end.emails_sent)

    async def _context(self, send: JourneySend) -> CampaignContext:
        try:
            ctx = await self._contexts.get(send.campaign_id)
        except NotFound as exc:
            raise not_found(exc) from exc
        if ctx.goal == "milestone" and send.trigger in OCCASIONS:
            ctx = replace(ctx, goal=f"milestone:{OCCASIONS[send.trigger]}")
        return ctx


def _plan(definition: JourneyDefinition, consented: bool) -> JourneyPlan:
    steps = [
        JourneyStepPlan(kind="send", name=s["name"], campaign_id=s["campaign_id"],
                        send_time=s.get("send_time", "now"))
        if s["type"] == "send"
        else JourneyStepPlan(kind="wait", minutes=int(s["minutes"]))
        for s in definition.steps
    ]  # fmt: skip
    return JourneyPlan(definition.id or 0, definition.version, steps, list(definition.exit_on),
                       consented)  # fmt: skip


async def _contact(conn: AsyncConnection, contact_id: int) -> Contact:
    row = (await conn.execute(select(Contact).where(col(Contact.id) == contact_id))).first()
    if row is None:
        raise not_found(NotFound("contact", contact_id))
    return Contact.model_validate(dict(row._mapping))


async def _open_times(
    conn: AsyncConnection, where: list[ColumnElement[bool]], now: datetime, limit: int = 500
) -> list[datetime]:
    rows = await conn.execute(
        select(Event.occurred_at)  # type: ignore[call-overload]
        .where(
            col(Event.type) == "email.opened", col(Event.occurred_at) >= now - OPEN_HISTORY, *where
        )  # fmt: skip
        .order_by(col(Event.occurred_at).desc())
        .limit(limit)
    )
    return list(rows.scalars())


async def _over_daily_limit(
    conn: AsyncConnection, contact: Contact, limit: int
) -> timedelta | None:
    """None if the person may get another marketing email today (their local day); else how
    long until their next day starts."""
    tz = zone(contact.timezone)
    local_now = utcnow().astimezone(tz)
    midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    sent_today = await conn.scalar(
        select(func.count()).where(
            col(Send.contact_id) == contact.id,
            col(Send.status).in_(DELIVERED),
            col(Send.dispatched_at) >= midnight,
        )
    )
    if (sent_today or 0) < limit:
        return None
    return delay_until_hour(local_now, tz, 0)
