"""The outbound webhook workflow's activities: the next batch, posting it, dead-lettering it.
The work is in ``tailor/outbound/delivery.py``."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from activities.errors import temporal_failures
from tailor.outbound.delivery import Deliveries
from tailor.payloads import OutboundBatch, OutboundDeadLettered, OutboundFailure


@dataclass(frozen=True)
class OutboundActivities:
    deliveries: Deliveries

    @activity.defn
    async def next_batch(self, endpoint_id: str) -> OutboundBatch:
        return await self.deliveries.next_batch(endpoint_id)

    @activity.defn
    async def deliver(self, batch: OutboundBatch) -> int:
        with temporal_failures():
            return await self.deliveries.deliver(batch, attempt=activity.info().attempt)

    @activity.defn
    async def dead_letter(self, failure: OutboundFailure) -> OutboundDeadLettered:
        return await self.deliveries.dead_letter(failure)
