"""Erasing a person (GDPR Art. 17), step by step as ``ErasureWorkflow`` runs it.

Sending to them has stopped before the workflow starts: the API appends a revocation to the
consent ledger (no send is claimed after it) and tells running campaigns and journeys, as a
consent change does. The workflow then removes what identifies them from the store
(``tailor.store.erasure``), from Redis' profile cache and this worker's in-memory copy, and
marks the erasure done with what it changed. Each step can run again without harm.
"""

from __future__ import annotations

from tailor.db import Database
from tailor.payloads import ErasureInput, ErasureOutcome
from tailor.profiles.cache import FeatureCache
from tailor.profiles.loader import ProfileCache
from tailor.store.erasure import erase_records, finish_erasure


class Eraser:
    def __init__(
        self, db: Database, *, features: FeatureCache | None, profiles: ProfileCache | None
    ) -> None:
        self._db = db
        self._features = features
        self._profiles = profiles

    async def erase_records(self, request: ErasureInput) -> ErasureOutcome:
        async with self._db.write() as conn:
            counts = await erase_records(
                conn, tenant_id=request.tenant_id, contact_id=request.contact_id
            )
        return ErasureOutcome(counts)

    async def forget_cached(self, request: ErasureInput) -> ErasureOutcome:
        """Redis' copy (raises if Redis does not answer: the activity retries) and this
        worker's. Another worker process's in-memory copy is read only while the database is
        down, is never sent to (the ledger stops it), and ages out within a day."""
        counts = {"worker_profile_cache": 0, "redis_profile_cache": 0}
        if self._profiles is not None:
            counts["worker_profile_cache"] = self._profiles.forget([request.contact_id])
        if self._features is not None:
            counts["redis_profile_cache"] = await self._features.forget([request.contact_id])
        return ErasureOutcome(counts)

    async def finish(self, request: ErasureInput, outcome: ErasureOutcome) -> None:
        async with self._db.write() as conn:
            await finish_erasure(conn, erasure_id=request.erasure_id, counts=outcome.counts)
