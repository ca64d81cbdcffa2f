"""OutboundWebhookWorkflow: one endpoint's outbox, drained in order, a batch at a time.

    next_batch ──► deliver (signed POST; Temporal retries with backoff, ~5 h budget) ──► next_batch
        │                 └─ budget spent ──► dead_letter (too many in a row: endpoint disabled)
        └─ nothing queued ──► wait for ``wake`` (OUTBOUND_LINGER) ──► none: complete (idle)

The id is ``outbound-<tenant>-<endpoint>``. The worker's relay (``tailor.temporal.outbound``)
signal-with-starts it with ``wake`` whenever the endpoint has new rows, so an idle endpoint
costs nothing in Temporal and a busy one is one run, continued-as-new every
``batches_per_run`` batches. Batches are serial: events reach a receiver in the order they were
queued, and a receiver that is down holds its queue rather than losing it. The history holds
outbox row ids, counts and fixed failure text only.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.outbound import OutboundActivities
    from tailor.payloads import (
        OutboundBatch,
        OutboundDeadLettered,
        OutboundFailure,
        OutboundOutcome,
        OutboundRun,
    )
    from workflows import options


def outbound_workflow_id(tenant_id: str, endpoint_id: str) -> str:
    return f"outbound-{tenant_id}-{endpoint_id}"


def _events(batch: OutboundBatch) -> str:
    count = len(batch.delivery_ids)
    return f"{count} event" if count == 1 else f"{count} events"


@workflow.defn
class OutboundWebhookWorkflow:
    def __init__(self) -> None:
        self._wake = False
        self._delivered = 0
        self._dead = 0

    @workflow.signal
    def wake(self) -> None:
        """The endpoint has new rows (or may have): look again. Extra wakes cost nothing."""
        self._wake = True

    @workflow.run
    async def run(self, run: OutboundRun) -> OutboundOutcome:
        self._delivered, self._dead = run.delivered, run.dead_lettered
        for _ in range(run.batches_per_run):
            status = await self._step(run.endpoint_id)
            if status is not None:
                await workflow.wait_condition(workflow.all_handlers_finished)
                return OutboundOutcome(status, self._delivered, self._dead)
            if workflow.info().is_continue_as_new_suggested():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            OutboundRun(run.tenant_id, run.endpoint_id, self._delivered, self._dead,
                        run.batches_per_run)
        )  # fmt: skip

    async def _step(self, endpoint_id: str) -> str | None:
        """One batch, or one wait for more; the run's final status when it should end."""
        self._wake = False
        batch: OutboundBatch = await workflow.execute_activity_method(
            OutboundActivities.next_batch,
            endpoint_id,
            start_to_close_timeout=options.STORE_TIMEOUT,
            retry_policy=options.STORE_RETRY,
            summary="next batch",
        )
        if batch.stop is not None:
            return batch.stop
        if not batch.delivery_ids:
            return "idle" if await self._idle() else None
        try:
            self._delivered += await workflow.execute_activity_method(
                OutboundActivities.deliver,
                batch,
                start_to_close_timeout=options.OUTBOUND_DELIVER_TIMEOUT,
                retry_policy=options.OUTBOUND_DELIVER_RETRY,
                summary=f"post {_events(batch)}",
            )
        except ActivityError as error:
            failed = await self._dead_letter(batch, error)
            self._dead += failed.dead_lettered
            if failed.disabled:
                return "disabled"
        return None

    async def _idle(self) -> bool:
        """Wait for a wake; True when none came (the run ends, the relay starts another)."""
        try:
            await workflow.wait_condition(
                lambda: self._wake,
                timeout=options.OUTBOUND_LINGER,
                timeout_summary="waiting for new events",
            )
        except TimeoutError:
            return not self._wake
        return False

    async def _dead_letter(
        self, batch: OutboundBatch, error: ActivityError
    ) -> OutboundDeadLettered:
        cause = error.cause  # the activity's ApplicationError: fixed text and a status code
        reason = cause.message if isinstance(cause, FailureError) else error.message
        return await workflow.execute_activity_method(
            OutboundActivities.dead_letter,
            OutboundFailure(batch.endpoint_id, batch.delivery_ids, reason[:300]),
            start_to_close_timeout=options.STORE_TIMEOUT,
            retry_policy=options.STORE_RETRY,
            summary=f"dead-letter {_events(batch)}",
        )
