"""The daily features job's activities: derive features (``tailor/profiles/daily.py``), then
emit the day's lapse and milestone events (``tailor/journeys/milestones.py``)."""

from __future__ import annotations

from temporalio import activity

from tailor.journeys.milestones import Milestones
from tailor.payloads import FeaturesPage, FeaturesPageResult
from tailor.profiles.daily import DailyFeatures


class FeatureActivities:
    def __init__(self, daily: DailyFeatures, milestones: Milestones) -> None:
        self._daily = daily
        self._milestones = milestones

    @activity.defn
    async def derive_page(self, page: FeaturesPage) -> FeaturesPageResult:
        return await self._daily.derive_page(page)

    @activity.defn
    async def emit_daily_events(self, page: FeaturesPage) -> FeaturesPageResult:
        return await self._milestones.emit(page, activity.heartbeat)
