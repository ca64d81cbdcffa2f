"""A journey's emails: written ahead while the journey waits, then sent through the same send
pipeline as a campaign chunk, on the step's own campaign row with the journey run as the send's
occurrence: a retry, a restart or a replayed trigger never sends one run's email twice.

A journey's control group (``tailor/holdout.py``, drawn per journey, so the same people in every
step and version) is held out of each email (``held_out``: the run goes on and sends nothing,
with no daily-limit wait), or gets the plain email; nothing is written ahead for either.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tailor.db import Database
from tailor.journeys.timing import JourneyTiming
from tailor.models import SendStatus, utcnow
from tailor.observability.metrics import EVENT_TO_SEND
from tailor.payloads import JourneySend, JourneySendResult
from tailor.personalise.context import CampaignContext, CampaignContexts
from tailor.personalise.exemplars import ClusterExemplars
from tailor.personalise.generation import ClusterGenerator, clusters_of
from tailor.profiles.loader import ProfileLoader
from tailor.sending.pipeline import Heartbeat, SendPipeline
from tailor.store.campaigns import DELIVERED
from tailor.store.journeys import trigger_timing
from tailor.store.sends import sends_for

# Which occasion a milestone email celebrates, by the event that started the journey.
OCCASIONS = {
    "milestone.birthday": "birthday",
    "milestone.anniversary": "anniversary",
    "order.completed": "nth_order",
}


@dataclass(frozen=True)
class JourneyEmails:
    db: Database
    contexts: CampaignContexts
    pipeline: SendPipeline
    generator: ClusterGenerator
    profiles: ProfileLoader
    exemplars: ClusterExemplars
    timing: JourneyTiming

    async def prepare(self, send: JourneySend) -> bool:
        """Write the email ahead (LLM tiers), so the send after a wait is instant; the content
        lands in the generation cache the send reads. False: nothing to write ahead."""
        if not self.generator.enabled:
            return False
        ctx = await self._context(send)
        if ctx.rules_only or ctx.holdout.controls([send.contact_id]):
            return False  # the rules tier writes it at send time (or nothing is sent)
        profiles = await self.profiles.load([send.contact_id])
        if send.contact_id not in profiles:
            return False
        now = utcnow()
        clusters = clusters_of([profiles[send.contact_id].contact], ctx.catalog, now)
        retrievals = await self.exemplars.for_clusters(ctx, set(clusters.values()))
        return bool(await self.generator.for_contacts(ctx, clusters, now, retrievals))

    async def send(self, send: JourneySend, heartbeat: Heartbeat) -> JourneySendResult:
        ctx = await self._context(send)
        status = await self._status(send)
        if status in DELIVERED:
            return JourneySendResult("sent")  # an earlier attempt delivered it
        if status == SendStatus.HELD_OUT:
            return JourneySendResult("held_out")  # an earlier attempt held it out
        if not ctx.holdout.withholds(send.contact_id):  # held out: no email, so no wait
            retry_after = await self.timing.over_daily_limit(send.tenant_id, send.contact_id)
            if retry_after is not None:
                return JourneySendResult("throttled", int(retry_after.total_seconds()) + 1)
        journey = {"journey": send.journey_key, "step": send.step, "trigger": send.trigger,
                   "run_id": send.run_id,
                   "send_time": send.send_time_reason or "as soon as due"}  # fmt: skip
        await self.pipeline.deliver(
            replace(ctx, explain_extra={"journey": journey}), [send.contact_id], [],
            occurrence=send.run_id, review=False, heartbeat=heartbeat,
        )  # fmt: skip
        status = await self._status(send)
        if status in DELIVERED:
            await self._observe_event_to_send(send)
            return JourneySendResult("sent")
        if status == SendStatus.HELD_OUT:
            return JourneySendResult("held_out")  # the journey goes on; nothing counted as sent
        return JourneySendResult("suppressed" if status == SendStatus.SUPPRESSED else "failed")

    async def _observe_event_to_send(self, send: JourneySend) -> None:
        """The trigger path's latency, for an email the journey sends on its trigger: at once,
        with no wait step before it (later emails wait by design)."""
        if send.send_time != "now":
            return
        async with self.db.read() as conn:
            timing = await trigger_timing(conn, run_id=send.run_id)
        if timing is None:
            return
        received_at, steps = timing
        before = next((i for i, s in enumerate(steps) if s.get("name") == send.step), None)
        if before is None or any(s["type"] == "wait" for s in steps[:before]):
            return
        elapsed = (utcnow() - received_at).total_seconds()
        EVENT_TO_SEND.labels(send.tenant_id).observe(max(elapsed, 0.0))

    async def _status(self, send: JourneySend) -> str | None:
        async with self.db.read() as conn:
            mine = await sends_for(
                conn, campaign_id=send.campaign_id, contact_ids=[send.contact_id],
                occurrence=send.run_id,
            )  # fmt: skip
        return mine[0].status if mine else None

    async def _context(self, send: JourneySend) -> CampaignContext:
        ctx = await self.contexts.get(send.campaign_id)
        if ctx.goal == "milestone" and send.trigger in OCCASIONS:
            ctx = replace(ctx, goal=f"milestone:{OCCASIONS[send.trigger]}")
        return ctx
