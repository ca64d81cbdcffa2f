"""The campaign's sending activities: a chunk of the segment, and the sends released by review.

One activity per chunk of contacts keeps the workflow history small (a chunk is a few events
whatever its size) while every send stays individually idempotent through its send row. The
work is the send pipeline's (``tailor/sending/pipeline.py``); this class picks the chunk's
contacts, runs it, and counts what became of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from temporalio import activity

from activities.errors import temporal_failures
from tailor.db import Database
from tailor.models import SendStatus
from tailor.payloads import ChunkInput, ChunkResult, ReviewBacklog, ReviewRelease
from tailor.personalise.context import CampaignContexts
from tailor.sending.pipeline import SendPipeline
from tailor.store.campaigns import send_counts, totals
from tailor.store.reviews import backlog
from tailor.store.sends import chunk_counts


@dataclass(frozen=True)
class ChunkActivities:
    db: Database
    contexts: CampaignContexts
    pipeline: SendPipeline
    release_batch: int  # held sends released per pass

    @activity.defn
    async def send_chunk(self, chunk: ChunkInput) -> ChunkResult:
        with temporal_failures():
            ctx = await self.contexts.get(chunk.campaign_id)
            bounds = chunk.bounds
            contact_ids = await self.contexts.audience_page(
                ctx,
                due_at=chunk.due_at,
                after_contact_id=bounds.after_contact_id,
                up_to_contact_id=bounds.last_contact_id,
                limit=bounds.last_contact_id - bounds.after_contact_id,
            )
            if chunk.due_at is not None or ctx.send_time != "now":
                ctx = replace(ctx, send_round=chunk.due_at or "sweep")
            already_done = await self.pipeline.deliver(
                ctx, contact_ids, chunk.revoked_contact_ids, heartbeat=activity.heartbeat
            )
        async with self.db.read() as conn:
            counts = await chunk_counts(
                conn,
                campaign_id=chunk.campaign_id,
                after_contact_id=bounds.after_contact_id,
                last_contact_id=bounds.last_contact_id,
                # In send-time rounds the bounds also hold people of other rounds: only these.
                only=contact_ids if ctx.send_round is not None else None,
            )
        sent, suppressed, failed = totals(counts)
        return ChunkResult(sent, suppressed, failed, already_done=already_done,
                           held=counts.get(SendStatus.HELD, 0),
                           held_out=counts.get(SendStatus.HELD_OUT, 0))  # fmt: skip

    @activity.defn
    async def release_reviewed(self, release: ReviewRelease) -> ReviewBacklog:
        """Deliver the held sends whose review is decided: the approved content, or the
        rules-tier email if it was rejected or expired. Idempotent like a chunk: a retry
        finds what an earlier attempt delivered already settled."""
        with temporal_failures():
            ctx = await self.contexts.get(release.campaign_id)
            await self.pipeline.release_reviewed(
                ctx, release.revoked_contact_ids, batch_size=self.release_batch,
                heartbeat=activity.heartbeat,
            )  # fmt: skip
        async with self.db.read() as conn:
            waiting = await backlog(conn, campaign_id=ctx.campaign_id)
            counts = await send_counts(conn, campaign_id=ctx.campaign_id)
        sent, suppressed, failed = totals(counts)
        return ReviewBacklog(waiting.open_reviews, waiting.held, sent, suppressed, failed)
