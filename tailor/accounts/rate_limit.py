"""Per-caller API request rate limits: at most ``per_min`` requests a minute for each key (or
token subject), with bursts of up to ``burst`` after a quiet spell.

Algorithm: GCRA, the generic cell rate algorithm (a token bucket kept as one timestamp). Each key
stores its "theoretical arrival time" ``tat``: when the bucket will be full again. A request at
``now`` is let in if ``now >= max(tat, now) - (burst - 1) * interval`` and pushes ``tat`` on by one
``interval`` (60 s / per_min); otherwise it is refused with the exact wait until it would be let
in, which becomes the 429's ``Retry-After``. One number per active key, nothing per request, and
no edge effect of fixed windows (twice the limit across a window boundary).

Not to be confused with ``tailor.delivery.rate_limit``, which paces sends to a provider by
waiting; this one refuses at once, since an HTTP caller should be told to come back.

Redis (``settings.redis_url`` set): the check is one Lua script on ``<prefix>:ratelimit:<tenant>:
<key>``, timed by the Redis server's clock so every API process agrees; the key expires when its
bucket is full again, so idle keys leave nothing behind. Redis failing never refuses requests: the
limiter falls back to counting in-process (a warning logged once per outage) and tries Redis again
every few seconds; meanwhile each API process limits on its own.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tailor.accounts.principal import Principal
from tailor.config import Settings

log = logging.getLogger(__name__)

# A limiter that answers slowly delays every request: fail fast and count locally instead.
TIMEOUT_S = 0.5
REDIS_RETRY_AFTER_S = 5.0
SWEEP_EVERY_S = 60.0


@dataclass(frozen=True)
class RequestRate:
    per_min: int
    burst: int

    @property
    def interval_s(self) -> float:
        return 60.0 / self.per_min

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestRate:
        return cls(settings.api_rate_per_min, settings.api_rate_burst or settings.api_rate_per_min)


def bucket_key(principal: Principal) -> str:
    """Whose requests count together: ``<tenant>:<key>`` (``-`` for platform keys)."""
    return f"{principal.tenant_id or '-'}:{principal.rate_key}"


def _gcra(now: float, tat: float | None, rate: RequestRate) -> tuple[float, float | None]:
    """(seconds to wait, the new tat): a wait of 0 lets the request in and records it (new tat);
    a positive wait refuses it and changes nothing (None). The Lua script below is this
    function; change both together."""
    tat = now if tat is None or tat < now else tat
    allow_at = tat - (rate.burst - 1) * rate.interval_s
    if now < allow_at:
        return allow_at - now, None
    return 0.0, tat + rate.interval_s


class RequestLimiter(Protocol):
    async def hit(self, key: str, rate: RequestRate) -> float:
        """Count one request for key: 0.0 if it may go ahead, else the seconds until it may."""
        ...

    async def close(self) -> None: ...


def request_limiter(settings: Settings) -> RequestLimiter:
    """Shared through ``settings.redis_url`` when set, in-process otherwise. Connects lazily."""
    if not settings.redis_url:
        return LocalRequestLimiter()
    client = Redis.from_url(
        settings.redis_url,
        socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),  # the local fallback is the retry
    )
    return RedisRequestLimiter(client, prefix=settings.redis_key_prefix)


class LocalRequestLimiter:
    """The limits of one API process. ``clock`` is injectable for tests."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._next_sweep = clock() + SWEEP_EVERY_S

    async def hit(self, key: str, rate: RequestRate) -> float:
        now = self._clock()
        if now >= self._next_sweep:
            # A key whose bucket is full again needs no entry: forget idle keys.
            self._tats = {k: tat for k, tat in self._tats.items() if tat > now}
            self._next_sweep = now + SWEEP_EVERY_S
        wait, tat = _gcra(now, self._tats.get(key), rate)
        if tat is not None:
            self._tats[key] = tat
        return wait

    async def close(self) -> None:
        self._tats.clear()


# KEYS[1]: the key's tat in µs of Redis server time. ARGV: interval µs, burst.
# Returns the µs to wait (0: let in and recorded). The same computation as _gcra.
_HIT_LUA = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - (tonumber(ARGV[2]) - 1) * interval
if now < allow_at then return allow_at - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
           math.ceil((new_tat - now) / 1000) + 1)
return 0
"""


class RedisRequestLimiter:
    """Limits shared by every API process on one Redis; see the module docstring. Owns
    ``client``: ``close`` closes it."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str,
        fallback: LocalRequestLimiter | None = None,
        retry_after_s: float = REDIS_RETRY_AFTER_S,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_HIT_LUA)
        self._fallback = fallback or LocalRequestLimiter()
        self._retry_after_s = retry_after_s
        self._failing = False
        self._retry_at = 0.0  # time.monotonic() before which Redis is not tried again

    def key(self, key: str) -> str:
        """The Redis key of ``key``'s bucket."""
        return f"{self._prefix}:ratelimit:{key}"

    async def hit(self, key: str, rate: RequestRate) -> float:
        if not (self._failing and time.monotonic() < self._retry_at):
            interval_us = max(1, math.ceil(rate.interval_s * 1_000_000))
            try:
                wait_us = int(
                    await self._script(keys=[self.key(key)], args=[interval_us, rate.burst])
                )
            except (RedisError, OSError) as exc:
                self._failed(exc)
            else:
                self._answered()
                return wait_us / 1_000_000
        return await self._fallback.hit(key, rate)

    async def close(self) -> None:
        await self._fallback.close()
        await self._client.aclose()

    def _failed(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + self._retry_after_s
        if not self._failing:
            self._failing = True
            log.warning("request rate limits: Redis failed (%s); each API process counts its own "
                        "requests until it answers (tried again every %.0f s)",
                        type(exc).__name__, self._retry_after_s)  # fmt: skip

    def _answered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("request rate limits: Redis answers again; limits are shared")
