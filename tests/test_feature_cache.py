"""Profiles served from Redis (TAILOR_REDIS_URL): reads hit Redis first and fill misses from the
database; contact upserts and events through the API invalidate; Redis down means database
reads and working requests; Redis and the database both down means the worker's stale copy.

Against the real Redis at 127.0.0.1:6379 (CI starts it), each test under a key prefix of its
own, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import update
from sqlmodel import col

from api.main import create_app
from tailor.config import Settings
from tailor.db import Database
from tailor.demo.data import DEMO_TENANT
from tailor.models import Contact, Tenant, utcnow
from tailor.profiles.cache import FeatureCache
from tailor.profiles.loader import Profile, ProfileLoader, ProfileSource
from tailor.store.contacts import upsert_contacts
from tailor.store.events import StoredEvent
from tailor.store.tenants import upsert_tenant
from tests.conftest import empty_postgres, free_port, key_headers

REDIS_URL = os.environ.get("TAILOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def _reachable(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=2)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


@pytest.fixture
async def redis_settings() -> AsyncIterator[dict[str, Any]]:
    """Settings naming the real Redis and a key prefix of this test's own (deleted after)."""
    if not await _reachable(REDIS_URL):
        pytest.skip(f"Redis is not reachable at {REDIS_URL} (CI starts it: .ci/run)")
    prefix = f"tailor-test-{uuid.uuid4().hex[:12]}"
    yield {"redis_url": REDIS_URL, "redis_key_prefix": prefix}
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def feature_cache(**settings: Any) -> AsyncIterator[FeatureCache]:
    features = FeatureCache.from_settings(Settings(**settings))
    assert features is not None
    try:
        yield features
    finally:
        await features.close()


@pytest.fixture
async def features(redis_settings: dict[str, Any]) -> AsyncIterator[FeatureCache]:
    """The worker's cache: its own connection, like a separate process."""
    async with feature_cache(**redis_settings) as cache:
        yield cache


def loader(db: Database, features: FeatureCache | None, timeout_s: float = 5.0) -> ProfileLoader:
    return ProfileLoader(db, timeout_s=timeout_s, cache_size=100, features=features)


async def one(profiles: ProfileLoader, contact_id: int) -> Profile:
    return (await profiles.load([contact_id]))[contact_id]


async def add_contacts(db: Database, *emails: str) -> list[int]:
    async with db.session() as session:
        await upsert_tenant(session=session, tenant=Tenant.model_validate(DEMO_TENANT))
        rows = [
            {"email": email, "external_id": f"u-{i}", "first_name": "Ada",
             "last_open_at": datetime.fromisoformat("2025-02-01T09:30:00+00:00"),
             "preferred_categories": ["kitchen"], "cart_items": ["SKU-1"]}
            for i, email in enumerate(emails)
        ]  # fmt: skip
        results = await upsert_contacts(session=session, tenant_id="demo", contacts=rows)
    return [r.id for r in results]


async def rename_behind_the_cache(db: Database, contact_id: int, first_name: str) -> None:
    async with db.write() as conn:
        await conn.execute(
            update(Contact).where(col(Contact.id) == contact_id).values(first_name=first_name)
        )


async def test_profiles_are_served_from_redis_until_invalidated(
    db: Database, features: FeatureCache
) -> None:
    [ada] = await add_contacts(db, "ada@example.com")
    profiles = loader(db, features)
    first = await one(profiles, ada)
    assert first.explain(utcnow()) == {"source": "live"}

    await rename_behind_the_cache(db, ada, "Grace")
    cached = await one(loader(db, features), ada)  # a fresh worker: nothing in its memory
    assert cached.source is ProfileSource.REDIS
    assert cached.contact.first_name == "Ada", "Redis served it, not the database"
    assert cached.contact.model_dump() == first.contact.model_dump()  # datetimes, lists intact
    why = cached.explain(utcnow())
    assert why["source"] == "redis" and 0 <= int(str(why["age_s"])) < 60

    await features.invalidate([ada])
    fresh = await one(profiles, ada)
    assert (fresh.source, fresh.contact.first_name) == (ProfileSource.DATABASE, "Grace")


async def test_misses_are_read_from_the_database_and_cached(
    db: Database, features: FeatureCache
) -> None:
    ada, bob = await add_contacts(db, "ada@example.com", "bob@example.com")
    profiles = loader(db, features)
    await profiles.load([ada])
    both = await profiles.load([ada, bob, 999_999])  # 999999: no such contact
    assert {cid: p.source for cid, p in both.items()} == {
        ada: ProfileSource.REDIS,
        bob: ProfileSource.DATABASE,
    }
    assert set(await features.get_many([ada, bob, 999_999])) == {ada, bob}


async def test_a_profile_read_before_a_write_is_not_cached_after_it(
    db: Database, features: FeatureCache
) -> None:
    """A send that read the profile just before a write committed (or from a lagging replica),
    and caches it only after the write's invalidation, must not bring the old profile back."""
    [ada] = await add_contacts(db, "ada@example.com")
    async with db.read_session() as session:
        before = await session.get(Contact, ada)
    assert before is not None
    await rename_behind_the_cache(db, ada, "Grace")  # the write commits...
    await features.invalidate([ada])  # ...and invalidates
    await features.put_many([before])  # the slow reader caches what it read
    assert await features.get_many([ada]) == {}
    assert (await one(loader(db, features), ada)).contact.first_name == "Grace"


@dataclass
class ProfileReadingTriggers:
    """Stands in for trigger processing: reads each event's profile, as a journey it starts
    would, and keeps what it saw."""

    profiles: ProfileLoader
    seen: list[Profile] = field(default_factory=list)

    async def on_events(self, tenant_id: str, events: Sequence[StoredEvent]) -> None:
        for event in events:
            if event.contact_id is not None:
                self.seen.append(await one(self.profiles, event.contact_id))


@asynccontextmanager
async def running_api(
    db: Database, triggers: ProfileReadingTriggers, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    async with db.session() as session:
        await upsert_tenant(session=session, tenant=Tenant.model_validate(DEMO_TENANT))
    app = create_app(Settings(database_url=db.url, rag_enabled=False, **settings))
    async with app.router.lifespan_context(app):
        app.state.triggers = triggers
        transport = httpx.ASGITransport(app=app)
        headers = await key_headers(db, "demo", "admin")
        async with httpx.AsyncClient(
            transport=transport, base_url="http://tailor", headers=headers
        ) as client:
            yield client


async def post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(path, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def upsert(http: httpx.AsyncClient, **contact: Any) -> int:
    answer = await post(http, "/v1/contacts", {"contacts": [contact]})
    return int(answer["data"][0]["id"])


async def test_an_event_through_the_api_invalidates_the_cached_profile(
    db: Database, features: FeatureCache, redis_settings: dict[str, Any]
) -> None:
    profiles = loader(db, features)
    triggers = ProfileReadingTriggers(profiles)
    async with running_api(db, triggers, **redis_settings) as http:
        ada = await upsert(http, email="ada@example.com", external_id="u-1", first_name="Ada")
        await profiles.load([ada])
        assert (await one(profiles, ada)).source is ProfileSource.REDIS

        opened = "2025-03-01T10:00:00+00:00"
        await post(http, "/v1/track", {"userId": "u-1", "event": "Email Opened",
                                       "timestamp": opened})  # fmt: skip

    # The journeys the event starts, and every send after it, read the new feature.
    assert [p.contact.last_open_at for p in triggers.seen] == [datetime.fromisoformat(opened)]
    assert (await one(profiles, ada)).contact.last_open_at == datetime.fromisoformat(opened)


async def test_a_contact_upsert_through_the_api_invalidates_the_cached_profile(
    db: Database, features: FeatureCache, redis_settings: dict[str, Any]
) -> None:
    profiles = loader(db, features)
    async with running_api(db, ProfileReadingTriggers(profiles), **redis_settings) as http:
        ada = await upsert(http, email="ada@example.com", first_name="Ada", engagement_score=20)
        await profiles.load([ada])
        assert (await one(profiles, ada)).source is ProfileSource.REDIS

        assert await upsert(http, email="ada@example.com", first_name="Ada",
                            engagement_score=95, cart_items=["SKU-9"]) == ada  # fmt: skip

    after = (await one(profiles, ada)).contact
    assert (after.engagement_score, after.cart_items) == (95, ["SKU-9"])


async def test_with_redis_down_profiles_come_from_the_database_and_requests_succeed(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    down = {"redis_url": f"redis://127.0.0.1:{free_port()}/0"}  # nothing listens there
    async with feature_cache(**down) as features:
        profiles = loader(db, features)
        with caplog.at_level(logging.WARNING, logger="tailor.profiles.cache"):
            async with running_api(db, ProfileReadingTriggers(profiles), **down) as http:
                ada = await upsert(http, email="ada@example.com", external_id="u-1",
                                   first_name="Ada")  # fmt: skip
                await post(http, "/v1/track", {"userId": "u-1", "event": "Email Opened"})
            for _ in range(2):
                profile = await one(profiles, ada)
                assert (profile.source, profile.contact.first_name) == (
                    ProfileSource.DATABASE,
                    "Ada",
                )
    # One warning per kind of failure and process, not one per read or request.
    warnings = [r for r in caplog.records if r.name == "tailor.profiles.cache"]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]  # the API's and the worker's
    assert all("ConnectionError" in r.getMessage() for r in warnings)


@asynccontextmanager
async def private_redis() -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test's own, which it can stop."""
    server_bin = shutil.which("redis-server")
    if server_bin is None:
        pytest.skip("redis-server is not on PATH (CI installs it: .ci/run)")
    port = free_port()
    server = subprocess.Popen(
        [server_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        async with asyncio.timeout(10):
            while not await _reachable(url):
                await asyncio.sleep(0.05)
        yield url, server
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.postgres
async def test_with_redis_and_the_database_down_the_worker_serves_its_stale_copy(
    postgres_url: str,
) -> None:
    await empty_postgres(postgres_url)
    db = Database(postgres_url)
    lock = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        ada, bob = await add_contacts(db, "ada@example.com", "bob@example.com")
        async with private_redis() as (url, server), feature_cache(redis_url=url) as features:
            profiles = loader(db, features, timeout_s=0.3)
            read_at = (await one(profiles, ada)).loaded_at
            assert (await one(profiles, ada)).source is ProfileSource.REDIS

            server.terminate()  # Redis goes away...
            server.wait(10)
            await lock.execute("BEGIN; LOCK TABLE contact IN ACCESS EXCLUSIVE MODE")  # ...and so
            found = await profiles.load([ada, bob])  # does the profile store

        assert list(found) == [ada], "Bob was never read: no profile, no email this time"
        assert found[ada].contact.first_name == "Ada"
        assert found[ada].loaded_at == read_at, "its age counts from the database read"
        why = found[ada].explain(utcnow())
        assert why["source"] == "cache" and why["stale"] is True
        assert 0 <= int(str(why["age_s"])) < 60
    finally:
        await lock.close()
        await db.dispose()
