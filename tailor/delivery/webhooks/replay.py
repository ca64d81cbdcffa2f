"""Remembering single-use webhook tokens, so a captured request cannot be played again.

``ReplayGuard.seen`` records a token and says whether it was already there, in one step (Redis
``SET NX EX`` or a unique row do this atomically). A token only needs remembering for as long as
its request would still pass the freshness check; after that the timestamp refuses it anyway.
``RedisReplayGuard`` is the one for a fleet of API processes, ``MemoryReplayGuard`` for one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from redis.asyncio import Redis


class ReplayGuard(Protocol):
    async def seen(self, token: str, *, ttl: timedelta) -> bool:
        """True when ``token`` was recorded before (and not yet expired); records it otherwise."""
        ...


class MemoryReplayGuard:
    """One process's memory: for tests and a single worker, not for a fleet."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}

    async def seen(self, token: str, *, ttl: timedelta) -> bool:
        now = self._clock()
        if len(self._expiry) > 1024:  # sweep now and then, so the dict stays small
            self._expiry = {t: at for t, at in self._expiry.items() if at > now}
        expires = self._expiry.get(token)
        if expires is not None and expires > now:
            return True
        self._expiry[token] = now + ttl.total_seconds()
        return False


class RedisReplayGuard:
    """Shared by every API process: ``SET key 1 NX EX ttl`` records and tests in one step."""

    def __init__(self, client: Redis, *, prefix: str = "tailor") -> None:
        self._client = client
        self._prefix = f"{prefix}:webhook-token:"

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "tailor") -> RedisReplayGuard:
        client = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client, prefix=prefix)

    async def seen(self, token: str, *, ttl: timedelta) -> bool:
        # The token is the provider's random value, never personal data; hashing keeps keys short.
        key = self._prefix + hashlib.sha256(token.encode()).hexdigest()
        created = await self._client.set(key, b"1", nx=True, ex=max(1, int(ttl.total_seconds())))
        return not created

    async def close(self) -> None:
        await self._client.aclose()
