"""The A/B test's activities: decide from engagement, start the rollout, keep the winner.
The work is in ``tailor/ab_tests/``."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from activities.errors import temporal_failures
from rag.index import ExemplarIndex
from tailor.ab_tests import looks, winner
from tailor.db import Database
from tailor.payloads import AbLook, AbRollout, AbVerdict
from tailor.personalise.pii import PiiScanner


@dataclass(frozen=True)
class AbTestActivities:
    db: Database
    index: ExemplarIndex | None  # None: retrieval is off, winners join no corpus
    pii: PiiScanner

    @activity.defn
    async def evaluate(self, look: AbLook) -> AbVerdict:
        with temporal_failures():
            return await looks.evaluate(self.db, look)

    @activity.defn
    async def roll_out_winner(self, rollout: AbRollout) -> str:
        with temporal_failures():
            return await winner.roll_out(self.db, rollout)

    @activity.defn
    async def add_winner_to_corpus(self, test_id: str) -> str | None:
        if self.index is None:
            return None
        with temporal_failures():
            return await winner.add_to_corpus(self.db, self.index, self.pii, test_id)

    @activity.defn
    async def finish(self, test_id: str, status: str) -> None:
        await winner.finish(self.db, test_id, status)
