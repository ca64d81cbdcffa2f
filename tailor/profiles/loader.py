"""Recipient profiles (identity and features) for a chunk, with a fallback when the profile
store fails: three attempts with exponential backoff, then the worker's cached copy of each
profile if it is at most 24 hours old, marked stale in "why this email". A recipient with no
fresh cached profile is not sent this attempt; the chunk is retried later for them.

With ``TAILOR_REDIS_URL`` set, profiles are read from Redis first (``tailor.profiles.cache``, one
round trip per chunk) and only the misses from the store, which are then cached there. Profiles
are read from ``TAILOR_FEATURES_DATABASE_URL`` when set (a read replica, or the feature store's
database), otherwise from the main database. "Why this email" names where each came from.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.exc import SQLAlchemyError

from tailor.db import Database
from tailor.models import Contact, utcnow
from tailor.profiles.cache import FeatureCache
from tailor.store.profiles import contacts_by_id

log = logging.getLogger(__name__)

MAX_STALE = timedelta(hours=24)
ATTEMPTS = 3
FIRST_BACKOFF_S = 0.2


class ProfileSource(StrEnum):
    """Where a profile came from, as "why this email" names it."""

    DATABASE = "live"  # the profile store; the name predates Redis and stored sends carry it
    REDIS = "redis"  # the feature cache: at most TAILOR_FEATURE_CACHE_TTL_S old
    STALE = "cache"  # the worker's own copy, because the profile store failed


@dataclass(frozen=True)
class Profile:
    contact: Contact
    loaded_at: datetime  # when it was read from the profile store
    source: ProfileSource = ProfileSource.DATABASE

    @property
    def stale(self) -> bool:
        return self.source is ProfileSource.STALE

    def explain(self, now: datetime) -> dict[str, object]:
        if self.source is ProfileSource.DATABASE:
            return {"source": self.source.value}
        age_s = round((now - self.loaded_at).total_seconds())
        if self.source is ProfileSource.REDIS:
            return {"source": self.source.value, "age_s": age_s}
        return {"source": self.source.value, "stale": True, "age_s": age_s}


class ProfileCache:
    """The last profile read for each contact, newest first out; bounded."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[int, Profile] = OrderedDict()

    def put(self, profiles: Sequence[Profile]) -> None:
        for profile in profiles:
            key = profile.contact.id or 0
            self._entries[key] = profile
            self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, contact_ids: Sequence[int]) -> int:
        """Drop these contacts' profiles (an erasure); returns how many were held."""
        return sum(self._entries.pop(c, None) is not None for c in contact_ids)

    def fresh(self, contact_ids: Sequence[int], now: datetime) -> dict[int, Profile]:
        found: dict[int, Profile] = {}
        for contact_id in contact_ids:
            profile = self._entries.get(contact_id)
            if profile is not None and now - profile.loaded_at <= MAX_STALE:
                found[contact_id] = Profile(profile.contact, profile.loaded_at, ProfileSource.STALE)
        return found


class ProfileLoader:
    def __init__(
        self,
        db: Database,
        *,
        timeout_s: float,
        cache_size: int,
        features: FeatureCache | None = None,
    ) -> None:
        self._db = db
        self._timeout_s = timeout_s
        self._features = features
        self.cache = ProfileCache(cache_size)

    async def load(self, contact_ids: Sequence[int]) -> dict[int, Profile]:
        """Profiles by contact id; ids missing from the answer have no usable profile now."""
        if not contact_ids:
            return {}
        found: dict[int, Profile] = {}
        if self._features is not None:
            cached = await self._features.get_many(contact_ids)
            found = {
                cid: Profile(c.contact, c.cached_at, ProfileSource.REDIS)
                for cid, c in cached.items()
            }
        missing = [cid for cid in contact_ids if cid not in found]
        if missing:
            found.update(await self._from_store(missing))
        self.cache.put([p for p in found.values() if not p.stale])
        return found

    async def _from_store(self, contact_ids: Sequence[int]) -> dict[int, Profile]:
        failure = ""
        for attempt in range(ATTEMPTS):
            try:
                async with asyncio.timeout(self._timeout_s):
                    contacts = await self._read(contact_ids)
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                failure = type(exc).__name__  # never the message: it may quote parameters
                if attempt + 1 < ATTEMPTS:
                    await asyncio.sleep(FIRST_BACKOFF_S * 2**attempt)
                continue
            now = utcnow()
            if self._features is not None:
                await self._features.put_many(contacts, read_at=now)
            return {contact.id or 0: Profile(contact, now) for contact in contacts}
        cached = self.cache.fresh(contact_ids, utcnow())
        log.warning("profile store failed %d times (%s): %d of %d profiles from the cache "
                    "(stale, at most %s old), the rest wait for a retry", ATTEMPTS, failure,
                    len(cached), len(contact_ids), MAX_STALE)  # fmt: skip
        return cached

    async def _read(self, contact_ids: Sequence[int]) -> list[Contact]:
        async with self._db.read_session() as session:
            return await contacts_by_id(session=session, contact_ids=contact_ids)
