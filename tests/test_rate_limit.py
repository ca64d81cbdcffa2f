"""Per-tenant sending rate limits (tailor.delivery.rate_limit).

The in-process limiter runs in virtual time, so its grant times are asserted exactly. The Redis
limiter runs against the real Redis at 127.0.0.1:6379 (CI starts it), each test under a key prefix
of its own (deleted after); its tests assert counts within windows and generous lower bounds on
elapsed time, never tight upper bounds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tailor.delivery.rate_limit import LocalRateLimiter, RateLimiter, RedisRateLimiter, rate_limiter
from tests.conftest import free_port

REDIS_URL = os.environ.get("TAILOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
pytestmark = pytest.mark.timeout(30)  # a limiter that waits wrongly should fail, not hang


class VirtualTime:
    """A clock and a sleep for ``LocalRateLimiter`` whose time moves only when the test says."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, next(self._order), woken))
        await woken

    async def advance_to(self, moment: float) -> None:
        """Wake every sleeper due by ``moment``, in order, letting each run before the next."""
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= moment:
            due, _, woken = heapq.heappop(self._sleepers)
            self.now = max(self.now, due)
            if not woken.done():  # its task may have been cancelled
                woken.set_result(None)
            await _settle()
        self.now = max(self.now, moment)

    async def run_until_idle(self) -> None:
        """Advance until nobody is sleeping any more."""
        await _settle()
        while self._sleepers:
            await self.advance_to(self._sleepers[0][0])


async def _settle() -> None:
    """Let every task that can run, run until it waits again."""
    for _ in range(10):
        await asyncio.sleep(0)


async def acquire_now(limiter: LocalRateLimiter, key: str, n: int, *, rate_per_s: float) -> None:
    """Acquire, failing (rather than hanging in virtual time) if the limiter makes us wait."""
    task = asyncio.create_task(limiter.acquire(key, n, rate_per_s=rate_per_s))
    await _settle()
    if not task.done():
        task.cancel()
        raise AssertionError(f"{n} for {key} had to wait")
    await task


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
def local(vt: VirtualTime) -> LocalRateLimiter:
    return LocalRateLimiter(clock=vt.clock, sleep=vt.sleep)


async def test_grants_at_most_rate_times_window_in_any_window(
    vt: VirtualTime, local: LocalRateLimiter
) -> None:
    grants: list[float] = []

    async def send(count: int) -> None:
        for _ in range(count):
            await local.acquire("acme", 1, rate_per_s=10)
            grants.append(vt.now)

    task = asyncio.create_task(send(25))
    await vt.run_until_idle()
    await task
    assert grants == [0.0] * 10 + [1.0] * 10 + [2.0] * 5


async def test_window_slides_rather_than_resets(vt: VirtualTime, local: LocalRateLimiter) -> None:
    await acquire_now(local, "acme", 5, rate_per_s=10)
    await vt.advance_to(0.5)
    await acquire_now(local, "acme", 5, rate_per_s=10)  # 10 in the window: full

    await vt.advance_to(1.0)  # the first 5 leave; the 5 from 0.5 stay until 1.5
    await acquire_now(local, "acme", 5, rate_per_s=10)
    waiting = asyncio.create_task(local.acquire("acme", 1, rate_per_s=10))
    await vt.advance_to(1.4)
    assert not waiting.done()
    await vt.advance_to(1.5)
    assert waiting.done()
    await waiting


async def test_callers_are_served_in_arrival_order_and_an_oversized_batch_goes_alone(
    vt: VirtualTime, local: LocalRateLimiter
) -> None:
    """A batch above rate x window waits for an empty window, holding its place: small batches
    arriving after it wait behind it rather than keep the window from ever emptying."""
    grants: list[tuple[str, float]] = []

    async def send(name: str, n: int) -> None:
        await local.acquire("acme", n, rate_per_s=10)
        grants.append((name, vt.now))

    tasks = [asyncio.create_task(send("first", 6))]
    await _settle()
    tasks.append(asyncio.create_task(send("oversized", 25)))
    await _settle()
    tasks += [asyncio.create_task(send(f"small-{i}", 1)) for i in range(3)]
    await vt.run_until_idle()
    await asyncio.gather(*tasks)

    # The oversized batch goes once "first" has left the window, and then holds it for
    # 25 / 10 s, so the long-run rate holds.
    assert grants == [
        ("first", 0.0),
        ("oversized", 1.0),
        ("small-0", 3.5),
        ("small-1", 3.5),
        ("small-2", 3.5),
    ]


async def test_a_rate_below_one_per_window_still_holds(
    vt: VirtualTime, local: LocalRateLimiter
) -> None:
    grants: list[float] = []

    async def send() -> None:
        for _ in range(3):
            await local.acquire("acme", 1, rate_per_s=0.5)
            grants.append(vt.now)

    task = asyncio.create_task(send())
    await vt.run_until_idle()
    await task
    assert grants == [0.0, 2.0, 4.0]


async def test_a_cancelled_waiter_takes_nothing_from_the_window(
    vt: VirtualTime, local: LocalRateLimiter
) -> None:
    await acquire_now(local, "acme", 10, rate_per_s=10)
    cancelled = asyncio.create_task(local.acquire("acme", 10, rate_per_s=10))
    await vt.advance_to(0.5)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled

    await vt.advance_to(1.0)
    await acquire_now(local, "acme", 10, rate_per_s=10)  # the cancelled 10 would make it wait


async def test_tenants_have_windows_of_their_own(vt: VirtualTime, local: LocalRateLimiter) -> None:
    await acquire_now(local, "acme", 10, rate_per_s=10)
    await acquire_now(local, "globex", 10, rate_per_s=10)


async def test_idle_tenants_leave_nothing_behind(vt: VirtualTime, local: LocalRateLimiter) -> None:
    for tenant in ("acme", "globex", "initech"):
        await acquire_now(local, tenant, 1, rate_per_s=10)
    await vt.advance_to(61.0)
    await acquire_now(local, "umbrella", 1, rate_per_s=10)
    assert list(local._windows) == ["umbrella"]


async def test_rejects_nonsense_and_ignores_nothing(local: LocalRateLimiter) -> None:
    with pytest.raises(ValueError):
        await local.acquire("acme", -1, rate_per_s=10)
    with pytest.raises(ValueError):
        await local.acquire("acme", 1, rate_per_s=0)
    with pytest.raises(ValueError):
        await local.acquire("acme", 1, rate_per_s=10, window_s=float("nan"))
    await acquire_now(local, "acme", 0, rate_per_s=10)
    assert not local._windows


async def test_factory_without_redis_limits_in_process() -> None:
    limiter = rate_limiter(None, "tailor")
    assert isinstance(limiter, LocalRateLimiter)
    await limiter.close()


# --- Redis -------------------------------------------------------------------------------------


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own on the real Redis (its keys deleted after)."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        try:
            await client.ping()
        except (RedisError, OSError):
            pytest.skip(f"Redis is not reachable at {REDIS_URL} (CI starts it: .ci/run)")
        prefix = f"tailor-test-{uuid.uuid4().hex[:12]}"
        yield prefix
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@asynccontextmanager
async def limiters(url: str, prefix: str, count: int) -> AsyncIterator[list[RateLimiter]]:
    """``count`` limiters on one Redis, as ``count`` worker processes would have."""
    made = [rate_limiter(url, prefix) for _ in range(count)]
    try:
        yield made
    finally:
        for limiter in made:
            await limiter.close()


def most_in_any_window(moments: Sequence[float], width: float) -> int:
    ordered = sorted(moments)
    return max(
        sum(1 for later in ordered[i:] if later < start + width) for i, start in enumerate(ordered)
    )


async def wait_for_entries(redis: Redis, key: str, count: int) -> None:
    for _ in range(200):
        if await redis.zcard(key) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} never held {count} entries")


async def test_two_workers_share_one_window(redis_prefix: str) -> None:
    grants: list[float] = []

    async def send(limiter: RateLimiter) -> None:
        for _ in range(40):
            await limiter.acquire("acme", 1, rate_per_s=50)
            grants.append(time.monotonic())

    async with limiters(REDIS_URL, redis_prefix, 2) as (one, two):
        began = time.monotonic()
        await asyncio.gather(send(one), send(one), send(two))

    assert len(grants) == 120
    # 50 go at once, 50 when they leave the window, the last 20 a window later. Alone, each
    # worker would have sent its share at once.
    assert grants[-1] - began >= 1.8
    # Grants are recorded after the limiter returns, up to a scheduling delay late: over a 1 s
    # window that delay could make a 51st appear inside; over 0.75 s it cannot (unless > 0.25 s).
    assert most_in_any_window(grants, 0.75) <= 50


async def test_an_oversized_batch_waits_for_an_empty_window_and_goes_alone(
    redis_prefix: str, redis: Redis
) -> None:
    key = f"{redis_prefix}:rate:acme"
    async with limiters(REDIS_URL, redis_prefix, 2) as (one, two):
        began = time.monotonic()
        await one.acquire("acme", 5, rate_per_s=40, window_s=0.5)
        oversized = asyncio.create_task(two.acquire("acme", 30, rate_per_s=40, window_s=0.5))
        await wait_for_entries(redis, key, 2)
        small = asyncio.create_task(one.acquire("acme", 1, rate_per_s=40, window_s=0.5))

        await oversized
        went = time.monotonic()
        assert not small.done()
        await small
        after = time.monotonic()

    assert went - began >= 0.4  # the window had to empty first (0.5 s, less slack)
    assert after - went >= 0.6  # then 30 at 40/s hold it for 0.75 s (less slack)


async def test_a_cancelled_wait_records_nothing(redis_prefix: str, redis: Redis) -> None:
    key = f"{redis_prefix}:rate:acme"
    async with limiters(REDIS_URL, redis_prefix, 1) as (limiter,):
        await limiter.acquire("acme", 10, rate_per_s=10)
        waiting = asyncio.create_task(limiter.acquire("acme", 5, rate_per_s=10))
        await wait_for_entries(redis, key, 2)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    members = await redis.zrange(key, 0, -1)
    assert len(members) == 1
    assert members[0].split(b":")[0] == b"10"  # "<n>:<token>"


async def test_redis_down_falls_back_to_limiting_in_process(
    redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tailor.delivery.rate_limit")

    async def send(limiter: RateLimiter) -> None:
        for _ in range(50):
            await limiter.acquire("acme", 1, rate_per_s=100)

    down = f"redis://127.0.0.1:{free_port()}/0"
    async with limiters(down, redis_prefix, 1) as (limiter,):
        began = time.monotonic()
        await asyncio.gather(*(send(limiter) for _ in range(3)))
        elapsed = time.monotonic() - began

    assert elapsed >= 0.95  # 100 at once, the other 50 a window later
    warnings = [r for r in caplog.records if r.name == "tailor.delivery.rate_limit"]
    assert len(warnings) == 1
    assert "Redis failed" in warnings[0].getMessage()


async def test_windows_expire_when_their_last_entry_does(redis_prefix: str, redis: Redis) -> None:
    key = f"{redis_prefix}:rate:acme"
    async with limiters(REDIS_URL, redis_prefix, 1) as (limiter,):
        await limiter.acquire("acme", 5, rate_per_s=50, window_s=0.2)
        assert 0 < await redis.pttl(key) <= 1000
        await asyncio.sleep(0.6)
        assert not await redis.exists(key)


async def test_the_script_is_loaded_again_after_a_flush(
    redis_prefix: str, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tailor.delivery.rate_limit")
    key = f"{redis_prefix}:rate:acme"
    async with limiters(REDIS_URL, redis_prefix, 1) as (limiter,):
        assert isinstance(limiter, RedisRateLimiter)
        await limiter.acquire("acme", 1, rate_per_s=10)
        await redis.script_flush()
        await limiter.acquire("acme", 1, rate_per_s=10)

    assert await redis.zcard(key) == 2
    assert not [r for r in caplog.records if r.name == "tailor.delivery.rate_limit"]
