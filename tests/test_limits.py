"""Request limits: per-key rate limits (in-process and shared through Redis) answer 429 with
Retry-After, and bodies over the size limit are refused with 413 before anything is stored."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from api.main import create_app
from tailor.accounts.rate_limit import LocalRequestLimiter, RedisRequestLimiter, RequestRate
from tailor.config import Settings
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.models import Contact, Template
from tests.conftest import free_port, key_headers

REDIS_URL = "redis://127.0.0.1:6379/0"
READ = "/v1/templates/default"


def _settings(db: Database, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": db.url, "redis_url": None, **overrides}
    return Settings(**values)


@asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as http:
            yield http


async def _count(db: Database, table: Any) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


# --- rate limits ---------------------------------------------------------------------------


async def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_do_not(
    sqlite_db: Database,
) -> None:
    await seed_demo(sqlite_db, contacts=0)
    busy = await key_headers(sqlite_db, "demo", "analyst")
    quiet = await key_headers(sqlite_db, "demo", "analyst")
    async with _client(_settings(sqlite_db, api_rate_per_min=3)) as http:
        for _ in range(3):
            assert (await http.get(READ, headers=busy)).status_code == 200
        refused = await http.get(READ, headers=busy)
        assert refused.status_code == 429
        # 3 a minute: the next one fits 20 s after the third.
        assert refused.headers["Retry-After"] == "20"
        assert "at most 3 a minute" in refused.json()["message"]
        # Another key of the same tenant has a budget of its own.
        assert (await http.get(READ, headers=quiet)).status_code == 200
        # Public routes are not counted against anyone, even a caller over its limit.
        for _ in range(5):
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/healthz", headers=busy)).status_code == 200


async def test_a_burst_setting_lets_that_many_in_at_once(sqlite_db: Database) -> None:
    await seed_demo(sqlite_db, contacts=0)
    headers = await key_headers(sqlite_db, "demo", "analyst")
    settings = _settings(sqlite_db, api_rate_per_min=60, api_rate_burst=2)
    async with _client(settings) as http:
        statuses = [(await http.get(READ, headers=headers)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_redis_shares_the_limit_between_api_processes(sqlite_db: Database) -> None:
    await seed_demo(sqlite_db, contacts=0)
    headers = await key_headers(sqlite_db, "demo", "marketer")
    prefix = f"tailor-test-{uuid.uuid4().hex[:10]}"  # this test's own keys
    settings = _settings(
        sqlite_db, api_rate_per_min=4, redis_url=REDIS_URL, redis_key_prefix=prefix
    )
    redis = Redis.from_url(REDIS_URL)
    try:
        async with _client(settings) as one, _client(settings) as two:
            statuses = [
                (await (one if i % 2 else two).get(READ, headers=headers)).status_code
                for i in range(5)
            ]
            assert statuses == [200, 200, 200, 200, 429]
            refused = await one.get(READ, headers=headers)
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "15"
        keys = [k.decode() async for k in redis.scan_iter(f"{prefix}:*")]
        assert len(keys) == 1 and keys[0].startswith(f"{prefix}:ratelimit:demo:key_")
        assert 0 < await redis.pttl(keys[0]) <= 61_000  # gone once the bucket is full again
    finally:
        await redis.delete(*[k async for k in redis.scan_iter(f"{prefix}:*")] or ["-"])
        await redis.aclose()


async def test_waiting_out_retry_after_lets_the_next_request_in() -> None:
    now = [1000.0]
    limiter = LocalRequestLimiter(clock=lambda: now[0])
    rate = RequestRate(per_min=6, burst=2)
    assert [await limiter.hit("k", rate) for _ in range(2)] == [0.0, 0.0]
    wait = await limiter.hit("k", rate)
    assert wait == pytest.approx(10.0)
    now[0] += wait
    assert await limiter.hit("k", rate) == 0.0
    assert await limiter.hit("k", rate) == pytest.approx(10.0)  # one at a time now: 6 a minute


async def test_requests_are_still_limited_when_redis_is_down() -> None:
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    limiter = RedisRequestLimiter(client, prefix="tailor-test-down")
    rate = RequestRate(per_min=60, burst=2)
    try:
        assert [await limiter.hit("k", rate) > 0 for _ in range(3)] == [False, False, True]
    finally:
        await limiter.close()


# --- body sizes ----------------------------------------------------------------------------


async def test_a_40_mb_body_is_refused_with_413_and_nothing_is_stored(db: Database) -> None:
    await seed_demo(db, contacts=3)
    headers = await key_headers(db, "demo", "marketer")
    before = await _count(db, Contact)
    row = b'{"email": "x%d@example.com", "first_name": "Ada"},'
    body = b'{"contacts": [' + b"".join(row % i for i in range(800_000))[:-1] + b"]}"
    assert len(body) > 40_000_000
    async with _client(_settings(db)) as http:
        response = await http.post(
            "/v1/contacts", content=body, headers={**headers, "Content-Type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["message"].startswith("request body over 5 MB: Content-Length is ")
    assert await _count(db, Contact) == before


async def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_all(
    db: Database,
) -> None:
    await seed_demo(db, contacts=0)
    headers = {**await key_headers(db, "demo", "marketer"), "Content-Type": "application/json"}
    before = await _count(db, Template)
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        template = b'{"name": "big", "subject": "Hi", "cta_text": "Go", '
        template += b'"cta_url": "https://shop.example.com", "body": "'
        yield template
        for _ in range(64):  # 4 MB of body text, 64 KB at a time
            sent += 1
            yield b"a" * 65_536
        yield b'"}'

    async with _client(_settings(db)) as http:
        response = await http.post("/v1/templates", content=chunks(), headers=headers)
        assert "content-length" not in {k.lower() for k in response.request.headers}
        assert response.status_code == 413
        assert response.json()["message"].startswith("request body over 1 MB: more than")
        assert response.headers["Connection"] == "close"  # the rest is not read
        assert sent < 20  # refused once past 1 MB, not after reading all 4 MB
        assert await _count(db, Template) == before

        # A chunked body under the limit goes through as usual.
        small = {
            "name": "small",
            "subject": "Hi",
            "body": "Hello",
            "cta_text": "Go",
            "cta_url": "https://shop.example.com",
        }

        async def small_chunks() -> AsyncIterator[bytes]:
            encoded = httpx.Request("POST", "/", json=small).content
            for i in range(0, len(encoded), 10):
                yield encoded[i : i + 10]

        ok = await http.post("/v1/templates", content=small_chunks(), headers=headers)
        assert ok.status_code == 201, ok.text


async def test_the_batch_routes_take_more_than_the_others_1_mb(sqlite_db: Database) -> None:
    await seed_demo(sqlite_db, contacts=0)
    headers = {**await key_headers(sqlite_db, "demo", "marketer"), "Content-Type": "text/plain"}
    two_mb = b"x" * 2_000_000
    async with _client(_settings(sqlite_db)) as http:
        over = await http.post("/v1/templates", content=two_mb, headers=headers)
        assert over.status_code == 413 and "over 1 MB" in over.json()["message"]
        # Past the size check: refused for what it is (not JSON), not for its size.
        batch = await http.post("/v1/contacts", content=two_mb, headers=headers)
        assert batch.status_code == 422, batch.text
        catalog = await http.post("/v1/products", content=two_mb, headers=headers)
        assert catalog.status_code == 403, catalog.text  # a marketer may not; size was fine
        # The catalog CSV keeps its own 10 MB limit.
        csv = {**headers, "Content-Type": "text/csv"}
        six_mb = await http.post("/v1/products/csv", content=b"x" * 6_000_000, headers=csv)
        assert six_mb.status_code == 403, six_mb.text
        huge = await http.post("/v1/products/csv", content=b"x" * 11_000_000, headers=csv)
        assert huge.status_code == 413 and "over 10 MB" in huge.json()["message"]
    settings = _settings(sqlite_db, api_max_body_bytes=1000, api_max_batch_body_bytes=3000)
    async with _client(settings) as http:
        small = await http.post("/v1/templates", content=b"x" * 1001, headers=headers)
        assert small.status_code == 413 and "over 1000 bytes" in small.json()["message"]
