"""The daily features job's activities: derive features (``tailor/profiles/daily.py``), then
emit the day's lapse and milestone events (``tailor/journeys/milestones.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from tailor.journeys.milestones import Milestones
from tailor.payloads import FeaturesPage, FeaturesPageResult
from tailor.profiles.daily import DailyFeatures


@dataclass(frozen=True)
class FeatureActivities:
    daily: DailyFeatures
    milestones: Milestones

    @activity.defn
    async def derive_page(self, page: FeaturesPage) -> FeaturesPageResult:
        return await self.daily.derive_page(page)

    @activity.defn
    async def emit_daily_events(self, page: FeaturesPage) -> FeaturesPageResult:
        return await self.milestones.emit(page, activity.heartbeat)
