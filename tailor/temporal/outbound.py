"""The outbox relay: wakes an endpoint's ``OutboundWebhookWorkflow`` when it has rows to send.

Publishers only write rows (``tailor.outbound.publish``), inside their own transactions and
without a Temporal call, so an ESP batch of a thousand events is not a thousand signals. Every
worker runs this loop instead:

- every ``TAILOR_OUTBOUND_POLL_S`` (1 s) it reads which endpoints got rows since the newest id it
  has seen (a range scan of the new rows) and signal-with-starts their workflows with ``wake``:
  a running one takes it as a signal, an idle endpoint gets a new run;
- every ``TAILOR_OUTBOUND_SWEEP_S`` (60 s), and when it starts, it wakes every active endpoint
  that has pending rows at all. That covers what the poll cannot see: a row whose id was taken
  before the newest one seen but committed after it, replays of old rows, a wake Temporal did
  not take (it was down), a workflow that was terminated;
- and it deletes settled rows older than ``TAILOR_OUTBOUND_RETENTION_DAYS``, a batch at a time.

Several workers each running the loop send the same wake more than once, which costs a workflow
task and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.service import RPCError

from tailor.config import Settings
from tailor.db import Database
from tailor.models import utcnow
from tailor.payloads import OutboundRun
from tailor.store.outbound import (
    EndpointRef,
    endpoints_with_pending,
    last_delivery_id,
    prune,
    queued_since,
)
from workflows.outbound import OutboundWebhookWorkflow, outbound_workflow_id
from workflows.search_attributes import KIND, TENANT

log = logging.getLogger(__name__)

PRUNE_BATCH = 5_000


class OutboundRelay:
    def __init__(
        self,
        client: Client,
        db: Database,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._db = db
        self._settings = settings
        self._clock = clock
        self._cursor: int | None = None  # the newest outbox id seen; None until the first poll
        self._swept_at = float("-inf")

    async def wake(self, endpoints: Iterable[EndpointRef]) -> int:
        """Signal-with-start each endpoint's workflow; returns how many were reached."""
        reached = 0
        for ref in endpoints:
            try:
                await self._client.start_workflow(
                    OutboundWebhookWorkflow.run,
                    OutboundRun(ref.tenant_id, ref.endpoint_id),
                    id=outbound_workflow_id(ref.tenant_id, ref.endpoint_id),
                    task_queue=self._settings.temporal_task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    start_signal="wake",
                    search_attributes=self._search_attributes(ref.tenant_id),
                    static_summary=f"Webhook endpoint {ref.endpoint_id} (tenant {ref.tenant_id})",
                )
                reached += 1
            except RPCError as error:
                log.warning("outbound: could not wake %s: %s", ref.endpoint_id, error.message)
        return reached

    def _search_attributes(self, tenant_id: str) -> TypedSearchAttributes | None:
        if not self._settings.temporal_search_attributes:
            return None
        return TypedSearchAttributes(
            [SearchAttributePair(TENANT, tenant_id), SearchAttributePair(KIND, "outbound")]
        )

    async def poll_once(self) -> int:
        """One pass: wake endpoints with new rows (and, when a sweep is due, every endpoint
        with pending rows, then prune). Returns how many workflows were woken."""
        now = self._clock()
        sweep = now - self._swept_at >= self._settings.outbound_sweep_s
        async with self._db.read() as conn:
            if self._cursor is None:
                self._cursor = await last_delivery_id(conn)
                sweep = True
            newest, fresh = await queued_since(conn, after_id=self._cursor)
            pending = await endpoints_with_pending(conn) if sweep else []
        due = list(dict.fromkeys([*fresh, *pending]))
        woken = await self.wake(due)
        if woken == len(due):  # otherwise look at the same rows again next time
            self._cursor = newest
        if sweep:
            self._swept_at = now
            await self._prune()
        return woken

    async def _prune(self) -> None:
        before = utcnow() - timedelta(days=self._settings.outbound_retention_days)
        async with self._db.write() as conn:
            deleted = await prune(conn, before=before, limit=PRUNE_BATCH)
        if deleted:
            log.info("outbound: pruned %d settled deliveries", deleted)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; a failed pass (database or Temporal away) is logged and
        the next one tries again."""
        while not stop.is_set():
            try:
                await self.poll_once()
            except Exception:
                log.exception("outbound: relay pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._settings.outbound_poll_s)
