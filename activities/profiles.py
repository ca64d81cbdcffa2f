"""Recipient profiles (identity and features) for a chunk, with a fallback when the profile
store fails: three attempts with exponential backoff, then the worker's cached copy of each
profile if it is at most 24 hours old, marked stale in "why this email". A recipient with no
fresh cached profile is not sent this attempt; the chunk is retried later for them.

Profiles are read from ``TAILOR_FEATURES_DATABASE_URL`` when set (a read replica, or the
feature store's database), otherwise from the main database.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from tailor.db import Database
from tailor.models import Contact, utcnow

log = logging.getLogger(__name__)

MAX_STALE = timedelta(hours=24)
ATTEMPTS = 3
FIRST_BACKOFF_S = 0.2


@dataclass(frozen=True)
class Profile:
    contact: Contact
    loaded_at: datetime
    stale: bool = False  # served from the cache because the profile store failed

    def explain(self, now: datetime) -> dict[str, object]:
        if not self.stale:
            return {"source": "live"}
        return {"source": "cache", "stale": True,
                "age_s": round((now - self.loaded_at).total_seconds())}  # fmt: skip


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

    def fresh(self, contact_ids: Sequence[int], now: datetime) -> dict[int, Profile]:
        found: dict[int, Profile] = {}
        for contact_id in contact_ids:
            profile = self._entries.get(contact_id)
            if profile is not None and now - profile.loaded_at <= MAX_STALE:
                found[contact_id] = Profile(profile.contact, profile.loaded_at, stale=True)
        return found


class ProfileLoader:
    def __init__(self, db: Database, *, timeout_s: float, cache_size: int) -> None:
        self._db = db
        self._timeout_s = timeout_s
        self.cache = ProfileCache(cache_size)

    async def load(self, contact_ids: Sequence[int]) -> dict[int, Profile]:
        """Profiles by contact id; ids missing from the answer have no usable profile now."""
        if not contact_ids:
            return {}
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
            profiles = [Profile(contact, now) for contact in contacts]
            self.cache.put(profiles)
            return {p.contact.id or 0: p for p in profiles}
        cached = self.cache.fresh(contact_ids, utcnow())
        log.warning("profile store failed %d times (%s): %d of %d profiles from the cache "
                    "(stale, at most %s old), the rest wait for a retry", ATTEMPTS, failure,
                    len(cached), len(contact_ids), MAX_STALE)  # fmt: skip
        return cached

    async def _read(self, contact_ids: Sequence[int]) -> list[Contact]:
        async with self._db.read_session() as session:
            rows = await session.execute(
                select(Contact).where(col(Contact.id).in_(list(contact_ids)))
            )
            return list(rows.scalars())
