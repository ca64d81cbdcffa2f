"""The erasure workflow's activities: thin, over ``tailor.privacy.erasure.Eraser``."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from tailor.payloads import ErasureInput, ErasureOutcome
from tailor.privacy.erasure import Eraser


@dataclass(frozen=True)
class ErasureActivities:
    eraser: Eraser

    @activity.defn
    async def erase_records(self, request: ErasureInput) -> ErasureOutcome:
        return await self.eraser.erase_records(request)

    @activity.defn
    async def forget_cached(self, request: ErasureInput) -> ErasureOutcome:
        return await self.eraser.forget_cached(request)

    @activity.defn
    async def finish_erasure(self, request: ErasureInput, outcome: ErasureOutcome) -> None:
        await self.eraser.finish(request, outcome)
