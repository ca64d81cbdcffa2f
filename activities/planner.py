"""The planner: decomposes a campaign into chunked steps, pages its segment, and closes it."""

from __future__ import annotations

import logging

from temporalio import activity

from activities.errors import template_error, temporal_failures
from tailor.config import Settings
from tailor.db import Database
from tailor.observability.tracing import note, step
from tailor.payloads import CampaignOutcome, CampaignPlan, ChunkBounds, PageRequest, StatusUpdate
from tailor.personalise.context import CampaignContexts
from tailor.personalise.rules import RuleBasedExecutor, TemplateRenderError
from tailor.sending.explain import plan_steps
from tailor.store.campaigns import audience_size, send_counts, set_status, start_scheduled, totals
from tailor.store.reviews import expire_open

log = logging.getLogger(__name__)


class PlannerActivities:
    def __init__(self, db: Database, settings: Settings, contexts: CampaignContexts) -> None:
        self._db = db
        self._settings = settings
        self._contexts = contexts
        self._executor = RuleBasedExecutor()

    @activity.defn
    async def plan_campaign(self, campaign_id: str) -> CampaignPlan:
        with temporal_failures():
            ctx = await self._contexts.get(campaign_id)
        try:
            self._executor.check_template(ctx.version)
        except TemplateRenderError as exc:
            if ctx.default_version is None:
                raise template_error(str(exc)) from exc
            log.warning("campaign %s: template does not compile (%s); every recipient gets "
                        "the tenant's default template", campaign_id, exc)  # fmt: skip
        async with self._db.write() as conn:  # a scheduled campaign starts now
            await start_scheduled(conn, campaign_id=campaign_id)
        with step("plan", tenant=ctx.tenant.id, campaign=campaign_id) as span:
            async with self._db.read() as conn:
                audience = await audience_size(conn, tenant_id=ctx.tenant.id, segment=ctx.segment)
            note(span, audience=audience, chunk_size=self._settings.chunk_size)
        return CampaignPlan(
            campaign_id=campaign_id,
            template_version_id=ctx.version.id or 0,
            audience=audience,
            chunk_size=self._settings.chunk_size,
            chunk_concurrency=self._settings.chunk_concurrency,
            chunks_per_run=self._settings.chunks_per_run,
            steps=plan_steps(self._settings),
            review_timeout_s=int(self._settings.review_timeout_hours * 3600),
            send_time=ctx.send_time,
        )

    @activity.defn
    async def next_chunks(self, request: PageRequest) -> list[ChunkBounds]:
        """Bounds of the next chunks after the cursor: two ids per chunk, never the contacts."""
        with temporal_failures():
            ctx = await self._contexts.get(request.campaign_id)
        ids = await self._contexts.audience_page(
            ctx,
            due_at=request.due_at,
            after_contact_id=request.after_contact_id,
            limit=request.chunk_size * request.max_chunks,
        )
        bounds: list[ChunkBounds] = []
        after = request.after_contact_id
        for start in range(0, len(ids), request.chunk_size):
            last = ids[start : start + request.chunk_size][-1]
            bounds.append(ChunkBounds(after_contact_id=after, last_contact_id=last))
            after = last
        return bounds

    @activity.defn
    async def expire_reviews(self, campaign_id: str) -> int:
        """Nobody decided in time: open reviews expire, their sends get the rules tier."""
        async with self._db.write() as conn:
            expired = await expire_open(conn, campaign_id=campaign_id, why="review timeout")
        if expired:
            log.warning("campaign %s: %d reviews expired undecided", campaign_id, expired)
        return expired

    @activity.defn
    async def finalize_campaign(self, update: StatusUpdate) -> CampaignOutcome:
        async with self._db.write() as conn:
            if update.status != "completed":
                # Nothing will send the held emails now: take them off the review queue.
                await expire_open(
                    conn, campaign_id=update.campaign_id, why=f"campaign {update.status}"
                )
            await set_status(conn=conn, campaign_id=update.campaign_id, status=update.status)
            counts = await send_counts(conn, campaign_id=update.campaign_id)
        sent, suppressed, failed = totals(counts)
        return CampaignOutcome(update.campaign_id, update.status, sent, suppressed, failed)
