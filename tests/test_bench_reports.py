"""``tailor bench reports`` at a small scale, as a user runs it, on each backend: every figure of
the campaign report equals what was seeded. And the bulk loader it seeds with
(``tailor.store.bulk``): rows read back as the ORM writes them, ids and foreign keys go on
working, and a row that breaks a foreign key loads nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from tailor.cli.bench_reports import plan
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.models import Contact
from tailor.store.bulk import copy_rows, foreign_keys_after, next_id, sync_id_sequence

CONTACTS = Contact.__table__  # type: ignore[attr-defined]
COLUMNS = ("id", "tenant_id", "email", "timezone", "locale", "device", "engagement_score",
           "purchase_frequency", "preferred_categories", "cart_items", "browse_items",
           "order_count", "soft_bounces", "created_at", "updated_at")  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_bench_reports_shows_every_email_and_event_seeded(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database = []
    if backend == "postgresql":
        database = ["--database-url", request.getfixturevalue("postgres_url")]
    run = subprocess.run(
        [sys.executable, "-m", "tailor.cli.main", "bench", "reports", "--sends", "2000",
         "--events", "6000", "--requests", "5", "--other-campaigns", "5", "--json", *database],
        capture_output=True, text=True, timeout=280,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # the bench's state folder lands here
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend
    assert report["mismatches"] == [] and report["api_errors"] == []
    rows = report["rows_seeded"]
    assert rows["contact"] == rows["send"] == 2000
    assert (
        rows["esp_event"] + rows["engagement"] + rows["tracking_hit"] + rows["conversion"] == 6000
    )
    assert rows["send_rollup"] == 5 * 14 * 24 * 4  # the other campaigns' rollups
    expected = report["expected"]
    assert expected["sent"] == 2000
    assert expected["delivered"] + expected["bounced"] + expected["soft_bounced"] == 2000
    assert 0 < expected["clicked"] < expected["opened"] < expected["delivered"]
    assert expected["ordered"] == expected["conversions"] + expected["conversions_open"] > 0
    assert expected["ordered"] == rows["conversion"] == rows["event"]
    assert report["rollup_rows"] > 0
    assert set(report["timings"]) == {"totals", "series=day", "series=hour"}
    for timing in report["timings"].values():
        assert 0 < timing["p50_ms"] <= timing["p95_ms"] <= timing["max_ms"]
    assert not list(tmp_path.iterdir()), "the state folder was removed"


def test_the_plan_spends_exactly_the_events_asked_for() -> None:
    for sends, events in [(1_000_000, 3_000_000), (2000, 6000), (1000, 2000), (3, 7), (10, 21)]:
        p = plan(sends, events)
        assert p.events == events and p.sends == sends
        assert p.clicked <= p.opened <= p.delivered
    with pytest.raises(ValueError, match="--events"):
        plan(1000, 1999)  # not even every email's provider report


def _contact(contact_id: int, tenant_id: str, email: str, categories: Any = ()) -> tuple[Any, ...]:
    at = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    return (contact_id, tenant_id, email, "UTC", "en", "mobile", 50, 0.0, categories, (), (), 0,
            0, at, at)  # fmt: skip


async def test_bulk_rows_read_back_as_written_and_ids_go_on(db: Database) -> None:
    await seed_demo(db, contacts=0)
    async with db.write() as conn:
        first = await next_id(conn, table=CONTACTS)
        rows = [_contact(first + i, "demo", f"bulk{i}@example.com", ["shoes"]) for i in range(3)]
        async with foreign_keys_after(conn, tables=[CONTACTS]):
            await copy_rows(conn, table=CONTACTS, columns=COLUMNS, rows=rows)
        await sync_id_sequence(conn, table=CONTACTS)
    async with db.session() as session:
        later = Contact(tenant_id="demo", email="later@example.com")
        session.add(later)
        await session.flush()
        assert later.id == first + 3  # the sequence moved past the loaded ids
        loaded = await session.get(Contact, first + 1)
    assert loaded is not None
    assert (loaded.email, loaded.preferred_categories, loaded.cart_items, loaded.created_at) == (
        "bulk1@example.com", ["shoes"], [], datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
    )  # fmt: skip


async def test_a_bulk_row_breaking_a_foreign_key_loads_nothing(db: Database) -> None:
    await seed_demo(db, contacts=0)
    with pytest.raises(IntegrityError):
        async with db.write() as conn, foreign_keys_after(conn, tables=[CONTACTS]):
            first = await next_id(conn, table=CONTACTS)
            rows = [_contact(first, "demo", "ok@example.com"),
                    _contact(first + 1, "no-such-tenant", "x@example.com")]  # fmt: skip
            await copy_rows(conn, table=CONTACTS, columns=COLUMNS, rows=rows)
    async with db.read() as conn:
        stored = await conn.execute(
            select(func.count())
            .select_from(Contact)
            .where(col(Contact.email).like("%@example.com"))
        )
        assert stored.scalar_one() == 0
    with pytest.raises(IntegrityError):  # the foreign key is back
        async with db.write() as conn:
            rows = [_contact(first + 2, "no-such-tenant", "y@example.com")]
            await copy_rows(conn, table=CONTACTS, columns=COLUMNS, rows=rows)
