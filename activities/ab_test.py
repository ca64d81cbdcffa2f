"""The A/B test's activities: decide from engagement, start the rollout, keep the winner.
The work is in ``tailor/ab_tests/``."""

from __future__ import annotations

from temporalio import activity

from activities.errors import temporal_failures
from rag.index import ExemplarIndex
from tailor.ab_tests import looks, winner
from tailor.db import Database
from tailor.payloads import AbLook, AbRollout, AbVerdict
from tailor.personalise.pii import PiiScanner


class AbTestActivities:
    def __init__(self, db: Database, index: ExemplarIndex | None, pii: PiiScanner) -> None:
        self._db = db
        self._index = index
        self._pii = pii

    @activity.defn
    async def evaluate(self, look: AbLook) -> AbVerdict:
        with temporal_failures():
            return await looks.evaluate(self._db, look)

    @activity.defn
    async def roll_out_winner(self, rollout: AbRollout) -> str:
        with temporal_failures():
            return await winner.roll_out(self._db, rollout)

    @activity.defn
    async def add_winner_to_corpus(self, test_id: str) -> str | None:
        if self._index is None:
            return None
        with temporal_failures():
            return await winner.add_to_corpus(self._db, self._index, self._pii, test_id)

    @activity.defn
    async def finish(self, test_id: str, status: str) -> None:
        await winner.finish(self._db, test_id, status)
