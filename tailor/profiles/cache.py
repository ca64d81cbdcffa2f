"""Recipient profiles cached in Redis: the send path reads here first and fills misses from the
database (``tailor.profiles.loader``); every write path invalidates after its transaction commits.

Keys are ``<prefix>:contact:v1:<contact id>`` (contact ids are unique across tenants); values are
the contact's columns as JSON, with datetimes in ISO 8601, and the time they were read from the
database. Redis holds the same personal data as the database (emails, names): log error types
and counts, never values or keys' contents.

Consistency: ``invalidate`` leaves a short-lived tombstone rather than deleting, and fills only
write absent keys (``SET NX``), so a reader that read the database (or a lagging replica) just
before a write committed cannot put the old profile back. An invalidation that fails (Redis
unreachable from the API) leaves the old profile served for at most the TTL.

Redis failing never fails a send or a request: every operation degrades to a miss (or a no-op),
and each kind of failure is logged once until Redis answers again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tailor.config import Settings
from tailor.models import Contact, utcnow

log = logging.getLogger(__name__)

KEY_VERSION = "v1"  # bump when the cached value's shape changes
# A cache that answers slowly is worse than none: fail fast and read the database.
TIMEOUT_S = 0.5
# Longer than a database read takes plus replica lag: see "Consistency" above.
INVALIDATED_HOLD_S = 60
_TOMBSTONE = b"-"
_COLUMNS = frozenset(Contact.model_fields)


@dataclass(frozen=True)
class CachedContact:
    contact: Contact
    cached_at: datetime  # when it was read from the database


class FeatureCache:
    """A read-through cache of contact profiles in Redis; see the module docstring."""

    def __init__(self, client: Redis, *, ttl_s: int, prefix: str = "tailor") -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._prefix = f"{prefix}:contact:{KEY_VERSION}:"
        self._failing: set[str] = set()  # failure types logged since Redis last answered

    @classmethod
    def from_settings(cls, settings: Settings) -> FeatureCache | None:
        """The cache ``TAILOR_REDIS_URL`` names, or None when it is unset. Connects lazily."""
        if not settings.redis_url:
            return None
        client = Redis.from_url(
            settings.redis_url,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),  # the database is the retry
        )
        return cls(client, ttl_s=settings.feature_cache_ttl_s, prefix=settings.redis_key_prefix)

    def key(self, contact_id: int) -> str:
        return f"{self._prefix}{contact_id}"

    async def get_many(self, contact_ids: Iterable[int]) -> dict[int, CachedContact]:
        """The cached profiles of these contacts, in one round trip; absent ids are misses."""
        ids = list(dict.fromkeys(contact_ids))
        if not ids:
            return {}
        try:
            values: list[bytes | None] = await self._client.mget([self.key(i) for i in ids])
        except (RedisError, OSError) as exc:
            self._failed("read", exc)
            return {}
        self._answered()
        found: dict[int, CachedContact] = {}
        for contact_id, value in zip(ids, values, strict=True):
            cached = _decode(value) if value and value != _TOMBSTONE else None
            if cached is not None and cached.contact.id == contact_id:
                found[contact_id] = cached
        return found

    async def put_many(
        self, contacts: Sequence[Contact], *, read_at: datetime | None = None
    ) -> None:
        """Cache profiles read from the database at ``read_at`` (default: now), unless
        invalidated meanwhile."""
        if not contacts:
            return
        read_at = read_at or utcnow()
        async with self._client.pipeline(transaction=False) as pipe:
            for contact in contacts:
                value = _encode(contact, read_at)
                pipe.set(self.key(contact.id or 0), value, ex=self._ttl_s, nx=True)
            await self._execute("write", pipe)

    async def invalidate(self, contact_ids: Iterable[int]) -> None:
        """Drop these contacts' profiles; call after the transaction that changed them commits."""
        ids = sorted(set(contact_ids))
        if not ids:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for contact_id in ids:
                pipe.set(self.key(contact_id), _TOMBSTONE, ex=INVALIDATED_HOLD_S)
            await self._execute("invalidate", pipe)

    async def forget(self, contact_ids: Iterable[int]) -> int:
        """Delete these contacts' entries outright (an erasure); unlike ``invalidate``, a Redis
        that does not answer raises, so the caller retries. Returns how many were held."""
        keys = [self.key(c) for c in sorted(set(contact_ids))]
        return int(await self._client.delete(*keys)) if keys else 0

    async def close(self) -> None:
        await self._client.aclose()

    async def _execute(self, operation: str, pipe: Pipeline) -> None:
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed(operation, exc)
        else:
            self._answered()

    def _failed(self, operation: str, exc: BaseException) -> None:
        failure = type(exc).__name__  # never the message: it may quote a value
        if failure not in self._failing:
            self._failing.add(failure)
            log.warning("feature cache: Redis %s failed (%s); profiles come from the database "
                        "until it answers (further %s failures not logged)",
                        operation, failure, failure)  # fmt: skip

    def _answered(self) -> None:
        if self._failing:
            self._failing.clear()
            log.info("feature cache: Redis answers again")


def _encode(contact: Contact, cached_at: datetime) -> str:
    payload = {"cached_at": cached_at.isoformat(), "contact": contact.model_dump(mode="json")}
    return json.dumps(payload, separators=(",", ":"))


def _decode(value: bytes) -> CachedContact | None:
    """The cached profile, or None for a value this version cannot read (treated as a miss)."""
    try:
        payload = json.loads(value)
        fields = payload["contact"]
        if set(fields) != _COLUMNS:
            return None  # written before a column was added or dropped
        contact = Contact.model_validate(fields)
        cached_at = datetime.fromisoformat(payload["cached_at"])
    except (ValueError, KeyError, TypeError):  # pydantic's ValidationError is a ValueError
        return None
    for name in _COLUMNS:  # the database hands back datetime.UTC; so do we
        moment = getattr(contact, name)
        if isinstance(moment, datetime):
            setattr(contact, name, moment.astimezone(UTC))
    return CachedContact(contact, cached_at)
