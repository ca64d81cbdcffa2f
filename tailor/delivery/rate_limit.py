"""Per-tenant sending rate limits: at most ``rate_per_s * window_s`` sends in any ``window_s``
seconds for a key, across the chunk tasks of one worker (``LocalRateLimiter``) or across every
worker sharing a Redis (``RedisRateLimiter``).

Algorithm: an exact sliding log of reservations, one entry per ``acquire`` (not per send), each
``(start, expires, n)``. A caller asking for ``n`` gets the earliest start at which the entries
still live, plus ``n``, fit in ``rate_per_s * window_s``; a batch larger than that waits until
nothing is live and goes alone. The entry is recorded at once and the caller sleeps until its
start. An entry stays live for ``max(window_s, n / rate_per_s)`` seconds after its start: a full
window for a batch that fits, longer for an oversized one, so the long-run rate holds after it too.

Entries count from the moment they are recorded, not from their start, so a waiting caller holds
its place: callers are served in arrival order, and a large batch waiting for room is never
starved by a stream of small ones (they queue behind it). The price is a little idle capacity
while a reservation waits. Callers of one key should pass the same rate and window; each call is
checked against its own.

Why a log (a sorted set, in Redis) rather than a two-bucket sliding counter: the counter assumes
the previous bucket's sends were spread evenly and so lets a burst exceed the limit, while a
provider's limit is a hard one (exceed it and sends are throttled or refused). The log stays
small: each entry is at least one send, so at most ``rate_per_s * window_s`` entries are live, plus
one per caller still waiting. Every call reads the live entries, so acquire per chunk rather than
per message at high rates.

Cancellation: a caller cancelled while waiting (a Temporal activity cancelled mid-wait) gets
``CancelledError`` and its entry is removed, so it takes nothing from the window. Callers already
waiting behind it keep their (now conservative) start times.

Redis: the whole reservation is one Lua script (EVALSHA, loading it on NOSCRIPT) on a sorted set
at ``<prefix>:rate:<key>`` scored by expiry in Redis server microseconds, so workers with skewed
clocks agree. The key expires when its last entry does, so idle tenants leave nothing behind.
Requires Redis >= 5 (a script that reads TIME and then writes).

Redis failing never stops sending: the limiter falls back to an in-process limiter, logs a warning
once, and tries Redis again every ``retry_after_s``. During an outage each worker limits on its
own, so the combined rate can reach (workers x rate); entries granted locally are not carried over
when Redis answers again.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# A limiter that answers slowly delays every send: fail fast and limit locally instead.
TIMEOUT_S = 0.5
REDIS_RETRY_AFTER_S = 5.0
# How often the local limiter drops the windows of keys nobody has asked about lately.
SWEEP_EVERY_S = 60.0
# Slack when comparing counts against rate_per_s * window_s (a float product).
_EPSILON = 1e-9


class RateLimiter(Protocol):
    async def acquire(self, key: str, n: int, *, rate_per_s: float, window_s: float = 1.0) -> None:
        """Wait until n more sends fit in the sliding window for key, then record them."""
        ...

    async def close(self) -> None: ...


def rate_limiter(redis_url: str | None, prefix: str) -> RateLimiter:
    """A limiter shared through the Redis at ``redis_url``, or an in-process one without it.
    Connects lazily."""
    if not redis_url:
        return LocalRateLimiter()
    client = Redis.from_url(
        redis_url,
        socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),  # the local fallback is the retry
    )
    return RedisRateLimiter(client, prefix=prefix)


def _validate(n: int, rate_per_s: float, window_s: float) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    if not rate_per_s > 0 or not math.isfinite(rate_per_s):
        raise ValueError(f"rate_per_s must be a positive number, not {rate_per_s}")
    if not window_s > 0 or not math.isfinite(window_s):
        raise ValueError(f"window_s must be a positive number, not {window_s}")


def _hold_s(n: int, rate_per_s: float, window_s: float) -> float:
    """How long an entry of n sends stays live: see the module docstring."""
    return max(window_s, n / rate_per_s)


@dataclass(eq=False)  # compared by identity: a cancelled caller removes its own entry
class _Entry:
    start: float
    expires: float
    n: int


def _expires(entry: _Entry) -> float:
    return entry.expires


def _earliest_start(now: float, n: int, capacity: float, live: list[_Entry]) -> float:
    """The start for n more sends given the live entries, sorted by expiry.

    The Lua script in ``RedisRateLimiter`` is this function; change both together.
    """
    used = sum(entry.n for entry in live)
    start = now
    limit = max(capacity - n, 0.0) + _EPSILON  # an oversized batch waits for an empty window
    for entry in live:
        if entry.expires <= start:
            used -= entry.n
        elif used > limit:
            start = entry.expires
            used -= entry.n
        else:
            break
    return start


class LocalRateLimiter:
    """A sliding-window limiter for the tasks of one event loop; see the module docstring.

    ``clock`` and ``sleep`` are injectable so tests can run it in virtual time.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._windows: dict[str, list[_Entry]] = {}  # live entries per key, sorted by expiry
        self._next_sweep = clock() + SWEEP_EVERY_S

    async def acquire(self, key: str, n: int, *, rate_per_s: float, window_s: float = 1.0) -> None:
        """Wait until n more sends fit in the sliding window for key, then record them."""
        _validate(n, rate_per_s, window_s)
        if n == 0:
            return
        entry = self._reserve(key, n, rate_per_s * window_s, _hold_s(n, rate_per_s, window_s))
        try:
            while (wait := entry.start - self._clock()) > 0:
                await self._sleep(wait)
        except BaseException:  # cancelled: nothing was sent, so take nothing from the window
            self._release(key, entry)
            raise

    async def close(self) -> None:
        self._windows.clear()

    def _reserve(self, key: str, n: int, capacity: float, hold_s: float) -> _Entry:
        # No await between reading and recording: atomic on the event loop.
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        live = self._windows.setdefault(key, [])
        _trim(live, now)
        start = _earliest_start(now, n, capacity, live)
        entry = _Entry(start, start + hold_s, n)
        bisect.insort(live, entry, key=_expires)
        return entry

    def _release(self, key: str, entry: _Entry) -> None:
        live = self._windows.get(key)
        if live is not None and entry in live:
            live.remove(entry)
            if not live:
                del self._windows[key]

    def _sweep(self, now: float) -> None:
        for key, live in list(self._windows.items()):
            _trim(live, now)
            if not live:
                del self._windows[key]
        self._next_sweep = now + SWEEP_EVERY_S


def _trim(live: list[_Entry], now: float) -> None:
    del live[: bisect.bisect_right(live, now, key=_expires)]


# KEYS[1]: the window, a sorted set of "<n>:<token>" scored by expiry (µs of Redis server time).
# ARGV: n, capacity (rate_per_s * window_s), hold µs, member. Returns the µs to wait.
# The same computation as _earliest_start; change both together.
_ACQUIRE_LUA = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local n = tonumber(ARGV[1])
local limit = math.max(tonumber(ARGV[2]) - n, 0) + 1e-9
local hold = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local live = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local counts, expiries = {}, {}
local used, start, last = 0, now, now
for i = 1, #live, 2 do
  local count = tonumber(string.match(live[i], '^(%d+):'))
  counts[#counts + 1] = count
  expiries[#expiries + 1] = tonumber(live[i + 1])
  used = used + count
  last = expiries[#expiries]
end
for i = 1, #expiries do
  if expiries[i] <= start then
    used = used - counts[i]
  elseif used > limit then
    start = expiries[i]
    used = used - counts[i]
  else
    break
  end
end
redis.call('ZADD', KEYS[1], start + hold, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(last, start + hold) - now) / 1000) + 1)
return start - now
"""


class RedisRateLimiter:
    """A sliding-window limiter shared by every worker on one Redis; see the module docstring.

    If Redis is unreachable, sends are limited by an in-process ``LocalRateLimiter`` instead (a
    warning is logged once per outage): sending must not stop because the cache is down. Owns
    ``client``: ``close`` closes it.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str,
        fallback: LocalRateLimiter | None = None,
        retry_after_s: float = REDIS_RETRY_AFTER_S,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_ACQUIRE_LUA)
        self._fallback = fallback or LocalRateLimiter()
        self._retry_after_s = retry_after_s
        self._failing = False
        self._retry_at = 0.0  # time.monotonic() before which Redis is not tried again

    def key(self, key: str) -> str:
        """The Redis key of ``key``'s window."""
        return f"{self._prefix}:rate:{key}"

    async def acquire(self, key: str, n: int, *, rate_per_s: float, window_s: float = 1.0) -> None:
        """Wait until n more sends fit in the sliding window for key, then record them."""
        _validate(n, rate_per_s, window_s)
        if n == 0:
            return
        if not (self._failing and time.monotonic() < self._retry_at):
            hold_us = math.ceil(_hold_s(n, rate_per_s, window_s) * 1_000_000)
            member = f"{n}:{uuid.uuid4().hex}"
            if await self._acquire(self.key(key), member, n, rate_per_s * window_s, hold_us):
                return
        await self._fallback.acquire(key, n, rate_per_s=rate_per_s, window_s=window_s)

    async def close(self) -> None:
        await self._fallback.close()
        await self._client.aclose()

    async def _acquire(
        self, redis_key: str, member: str, n: int, capacity: float, hold_us: int
    ) -> bool:
        """Reserve in Redis and wait; False when Redis did not answer."""
        try:
            try:
                wait_us = int(
                    await self._script(keys=[redis_key], args=[n, repr(capacity), hold_us, member])
                )
            except (RedisError, OSError) as exc:
                self._failed(exc)
                return False
            self._answered()
            if wait_us > 0:
                await asyncio.sleep(wait_us / 1_000_000)
        except asyncio.CancelledError:
            # Cancelled mid-wait, or mid-script (it may have run): take the reservation back.
            await asyncio.shield(self._release(redis_key, member))
            raise
        return True

    async def _release(self, redis_key: str, member: str) -> None:
        try:
            await self._client.zrem(redis_key, member)
        except (RedisError, OSError) as exc:
            # Left in place it only slows this tenant's other senders, and it expires.
            log.warning("rate limiter: could not release a cancelled reservation (%s)",
                        type(exc).__name__)  # fmt: skip

    def _failed(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + self._retry_after_s
        if not self._failing:
            self._failing = True
            log.warning("rate limiter: Redis failed (%s); each worker limits its own sends until "
                        "it answers (tried again every %.0f s)",
                        type(exc).__name__, self._retry_after_s)  # fmt: skip

    def _answered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("rate limiter: Redis answers again; sends are limited across workers")
