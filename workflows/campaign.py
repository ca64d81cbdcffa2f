"""CampaignWorkflow: one batch campaign, from plan to the last chunk.

    plan ──► page through the segment (keyset, ids only) ──► send chunks, N in flight ──► finalize
                 ▲                                                       │
                 └──────────── continue-as-new every few hundred chunks ◄┘

Chunks carry contact-id bounds, never contacts; the chunk activity loads, personalises, checks
consent and delivers. Pause holds new chunks, cancel stops them, and ``revoke_consent`` reaches
chunks scheduled from then on (the ledger, checked per message at send time, covers the rest).

LLM content a person must approve holds its recipients. Once the segment is done, the campaign
waits for the decisions (``review_decided`` signals, re-checked hourly in case one is lost),
delivers each decided cluster, and after ``review_timeout_s`` sends the rules-tier email to
whoever is still held.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.campaign_chunk import ChunkActivities
    from activities.planner import PlannerActivities
    from tailor.payloads import (
        CampaignOutcome,
        CampaignPlan,
        CampaignProgress,
        CampaignRun,
        ChunkBounds,
        ChunkInput,
        ChunkResult,
        PageRequest,
        ReviewBacklog,
        ReviewRelease,
        StatusUpdate,
    )
    from workflows import options

# Added after the first release: runs that predate it never wait for reviews.
REVIEW_QUEUE_PATCH = "review-queue"
# A decision whose signal was lost is still picked up this often (the store is the truth).
REVIEW_RECHECK = timedelta(hours=1)
# Added after the first release: campaigns that send at each recipient's best hour.
SEND_TIME_PATCH = "send-time-rounds"
SEND_TIME_ROUNDS = 24  # one pass over the segment per hour; then a sweep for anyone left
# Added after the first release: a campaign scheduled to start later waits for its time.
SCHEDULED_START_PATCH = "scheduled-start"

# Revocations signalled during a run, forwarded to later chunks; beyond this the ledger alone
# (always checked at send time) protects, and the history stays small.
MAX_FORWARDED_REVOCATIONS = 1000


@workflow.defn
class CampaignWorkflow:
    def __init__(self) -> None:
        self._progress = CampaignProgress()
        self._cancel_requested = False
        self._chunks: list[asyncio.Task[ChunkResult]] = []
        self._review_decisions = 0
        self._decisions_seen = 0

    @workflow.run
    async def run(self, run: CampaignRun) -> CampaignOutcome:
        campaign = run.campaign
        if run.progress is not None:
            self._progress = run.progress
        plan = run.plan
        if plan is None and campaign.start_at and workflow.patched(SCHEDULED_START_PATCH):
            await self._wait_for_start(datetime.fromisoformat(campaign.start_at))
            if self._cancel_requested:
                return await self._finalize(campaign.campaign_id, "cancelled")
        try:
            if plan is None:
                plan = await workflow.execute_activity_method(
                    PlannerActivities.plan_campaign,
                    campaign.campaign_id,
                    start_to_close_timeout=options.STORE_TIMEOUT,
                    retry_policy=options.PLAN_RETRY,
                    summary="plan: decompose campaign into chunked steps",
                )
                self._progress.total = plan.audience
                if plan.send_time != "now":  # best_hour, or a local "HH:00"
                    start = workflow.now().replace(minute=0, second=0, microsecond=0)
                    self._progress.round_at = start.isoformat()
            more = await self._send_chunks(plan)
            while not more and await self._next_round(plan):
                more = await self._send_chunks(plan)
        except (ActivityError, asyncio.CancelledError) as exc:
            if is_cancelled_exception(exc):
                # Cancelled through Temporal (UI, CLI) rather than the cancel signal: stop the
                # same way, record it, then end as cancelled.
                self._cancel_requested = True
                await self._stop_chunks()
                await self._finalize(campaign.campaign_id, "cancelled")
            else:
                await self._finalize(campaign.campaign_id, "failed")
            raise
        if more:
            # More segment left: carry the cursor and totals into a fresh history.
            await workflow.wait_condition(workflow.all_handlers_finished)
            self._progress.revoked_contact_ids = []
            workflow.continue_as_new(CampaignRun(campaign, plan, self._progress))
        if (
            not self._cancel_requested
            and self._progress.held
            and workflow.patched(REVIEW_QUEUE_PATCH)
        ):
            await self._settle_reviews(plan)
        outcome = await self._finalize(
            campaign.campaign_id, "cancelled" if self._cancel_requested else "completed"
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    async def _wait_for_start(self, start_at: datetime) -> None:
        """A durable timer to the scheduled start; the cancel signal ends it."""
        self._progress.status = "scheduled"
        while not self._cancel_requested and start_at > workflow.now():
            try:
                await workflow.wait_condition(
                    lambda: self._cancel_requested,
                    timeout=start_at - workflow.now(),
                    timeout_summary=f"scheduled: starts at {start_at:%Y-%m-%d %H:%M} UTC",
                )
            except TimeoutError:
                pass
        if not self._cancel_requested:
            self._progress.status = "running"

    async def _send_chunks(self, plan: CampaignPlan) -> bool:
        """Keep up to ``chunk_concurrency`` chunks in flight; True if segment is left over."""
        chunks_this_run = 0
        pending: list[ChunkBounds] = []
        exhausted = False
        while True:
            await workflow.wait_condition(
                lambda: (
                    self._cancel_requested
                    or any(task.done() for task in self._chunks)
                    or (not self._progress.paused and len(self._chunks) < plan.chunk_concurrency)
                )
            )
            self._collect_finished()
            if self._cancel_requested:
                break
            if self._progress.paused or len(self._chunks) >= plan.chunk_concurrency:
                continue
            if (
                chunks_this_run >= plan.chunks_per_run
                or workflow.info().is_continue_as_new_suggested()
            ):
                break
            if not pending and not exhausted:
                pending = await self._next_pages(plan)
                exhausted = not pending
            if not pending:
                break
            self._start_chunk(plan, pending.pop(0))
            chunks_this_run += 1

        if self._cancel_requested:
            await self._stop_chunks()
        while self._chunks:
            await workflow.wait_condition(lambda: any(task.done() for task in self._chunks))
            self._collect_finished()
        # The cursor only advances as chunks start, so bounds left in ``pending`` are re-paged.
        if pending:
            self._progress.cursor = pending[0].after_contact_id
        return not self._cancel_requested and not exhausted

    def _due_at(self, plan: CampaignPlan) -> str | None:
        """The hour this pass sends for (send-time rounds); None: everyone (and the sweep)."""
        if plan.send_time == "now" or self._progress.hour_round >= SEND_TIME_ROUNDS:
            return None
        return self._progress.round_at

    async def _next_round(self, plan: CampaignPlan) -> bool:
        """Send-time optimisation: wait for the next hour, then pass over the segment again
        for the people whose best local hour it is. False when there is no next round."""
        if (
            plan.send_time == "now"
            or self._cancel_requested
            or self._progress.hour_round >= SEND_TIME_ROUNDS
            or self._progress.round_at is None
            or not workflow.patched(SEND_TIME_PATCH)
        ):
            return False
        next_at = datetime.fromisoformat(self._progress.round_at) + timedelta(hours=1)
        if next_at > workflow.now():
            try:
                await workflow.wait_condition(
                    lambda: self._cancel_requested,
                    timeout=next_at - workflow.now(),
                    timeout_summary=f"send time: waiting for {next_at:%H:00} UTC",
                )
            except TimeoutError:
                pass
        if self._cancel_requested:
            return False
        self._progress.hour_round += 1
        self._progress.round_at = next_at.isoformat()
        self._progress.cursor = 0
        return True

    async def _stop_chunks(self) -> None:
        """Cancel in-flight chunks and wait until each has stopped (after its claimed message)."""
        for task in self._chunks:
            task.cancel()
        while self._chunks:
            await workflow.wait_condition(lambda: all(task.done() for task in self._chunks))
            self._collect_finished()

    def _collect_finished(self) -> None:
        for task in [t for t in self._chunks if t.done()]:
            self._chunks.remove(task)
            try:
                result = task.result()
            except (ActivityError, asyncio.CancelledError):
                if self._cancel_requested:
                    continue  # a cancelled chunk; finalize counts from the sends table
                raise
            self._progress.chunks_done += 1
            self._progress.sent += result.sent
            self._progress.suppressed += result.suppressed
            self._progress.failed += result.failed
            self._progress.held += result.held
            # Held-out people are processed too, or a campaign with a holdout would never reach
            # its total. Only the query's figure changes, no command: replay is unaffected.
            self._progress.held_out += result.held_out
            self._progress.processed += (
                result.sent + result.suppressed + result.failed + result.held_out
            )

    async def _settle_reviews(self, plan: CampaignPlan) -> None:
        """Deliver held sends as their reviews are decided; expire what is left at the deadline."""
        self._progress.status = "awaiting_review"
        deadline = workflow.now() + timedelta(seconds=plan.review_timeout_s)
        while not self._cancel_requested:
            self._decisions_seen = self._review_decisions
            backlog = await self._release_reviewed(plan)
            if backlog.open_reviews == 0:
                break
            remaining = deadline - workflow.now()
            if remaining <= timedelta(0):
                await workflow.execute_activity_method(
                    PlannerActivities.expire_reviews,
                    plan.campaign_id,
                    start_to_close_timeout=options.STORE_TIMEOUT,
                    retry_policy=options.STORE_RETRY,
                    summary="reviews: expire undecided, send the rules-tier email",
                )
                continue
            try:
                await workflow.wait_condition(
                    lambda: self._review_decisions > self._decisions_seen or self._cancel_requested,
                    timeout=min(remaining, REVIEW_RECHECK),
                    timeout_summary="review: waiting for decisions",
                )
            except TimeoutError:
                pass  # re-check the store, or expire at the deadline
        if not self._cancel_requested:
            self._progress.status = "running"

    async def _release_reviewed(self, plan: CampaignPlan) -> ReviewBacklog:
        backlog = await workflow.execute_activity_method(
            ChunkActivities.release_reviewed,
            ReviewRelease(plan.campaign_id, list(self._progress.revoked_contact_ids)),
            start_to_close_timeout=options.CHUNK_TIMEOUT,
            heartbeat_timeout=options.CHUNK_HEARTBEAT,
            retry_policy=options.CHUNK_RETRY,
            summary="reviews: deliver the decided, held sends",
        )
        self._progress.held = backlog.held
        self._progress.open_reviews = backlog.open_reviews
        self._set_totals(backlog.sent, backlog.suppressed, backlog.failed)
        return backlog

    async def _finalize(self, campaign_id: str, status: str) -> CampaignOutcome:
        """Record the final status; the totals come from the sends table, the source of truth."""
        outcome = await workflow.execute_activity_method(
            PlannerActivities.finalize_campaign,
            StatusUpdate(campaign_id, status),
            start_to_close_timeout=options.STORE_TIMEOUT,
            retry_policy=options.STORE_RETRY,
            summary=f"finalize: mark campaign {status}",
        )
        self._progress.status = outcome.status
        self._set_totals(outcome.sent, outcome.suppressed, outcome.failed)
        return outcome

    def _set_totals(self, sent: int, suppressed: int, failed: int) -> None:
        """Totals read from the sends table, the source of truth."""
        self._progress.sent = sent
        self._progress.suppressed = suppressed
        self._progress.failed = failed
        self._progress.processed = sent + suppressed + failed + self._progress.held_out

    async def _next_pages(self, plan: CampaignPlan) -> list[ChunkBounds]:
        return await workflow.execute_activity_method(
            PlannerActivities.next_chunks,
            PageRequest(
                campaign_id=plan.campaign_id,
                after_contact_id=self._progress.cursor,
                chunk_size=plan.chunk_size,
                max_chunks=max(plan.chunk_concurrency * 4, 8),
                due_at=self._due_at(plan),
            ),
            start_to_close_timeout=options.STORE_TIMEOUT,
            retry_policy=options.STORE_RETRY,
            summary=f"page: segment after contact {self._progress.cursor}",
        )

    def _start_chunk(self, plan: CampaignPlan, bounds: ChunkBounds) -> None:
        index = self._progress.chunks_done + len(self._chunks)
        self._progress.cursor = bounds.last_contact_id
        chunk = ChunkInput(
            campaign_id=plan.campaign_id,
            template_version_id=plan.template_version_id,
            bounds=bounds,
            chunk_index=index,
            revoked_contact_ids=list(self._progress.revoked_contact_ids),
            due_at=self._due_at(plan),
        )
        self._chunks.append(
            asyncio.ensure_future(
                workflow.execute_activity_method(
                    ChunkActivities.send_chunk,
                    chunk,
                    start_to_close_timeout=options.CHUNK_TIMEOUT,
                    heartbeat_timeout=options.CHUNK_HEARTBEAT,
                    retry_policy=options.CHUNK_RETRY,
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    summary=(
                        f"chunk {index}: personalise, guard, deliver contacts "
                        f"{bounds.after_contact_id + 1}..{bounds.last_contact_id}"
                    ),
                )
            )
        )

    @workflow.query
    def progress(self) -> CampaignProgress:
        return self._progress

    @workflow.signal
    def pause(self) -> None:
        if self._progress.status == "running":
            self._progress.paused = True
            self._progress.status = "paused"

    @workflow.signal
    def resume(self) -> None:
        if self._progress.status == "paused":
            self._progress.paused = False
            self._progress.status = "running"

    @workflow.signal
    def cancel(self) -> None:
        self._cancel_requested = True
        self._progress.paused = False
        self._progress.status = "cancelling"

    @workflow.signal
    def review_decided(self, review_id: int) -> None:
        """A reviewer approved or rejected ``review_id`` (already committed to the store)."""
        self._review_decisions += 1

    @workflow.signal
    def revoke_consent(self, contact_id: int) -> None:
        revoked = self._progress.revoked_contact_ids
        if contact_id not in revoked and len(revoked) < MAX_FORWARDED_REVOCATIONS:
            revoked.append(contact_id)
