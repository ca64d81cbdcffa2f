"""Store behaviour on both SQLite and PostgreSQL: the delivery claim and the consent ledger."""

from __future__ import annotations

import asyncio
import sqlite3

from alembic import command

from tailor.db import Database, alembic_config, sqlite_path
from tailor.models import ConsentStatus, Send, SendStatus
from tailor.store.campaigns import send_counts
from tailor.store.consent import consent_history, current_consent, record_consent
from tailor.store.sends import (
    claim_for_dispatch,
    claim_for_dispatch_sqlite,
    ensure_send_rows,
    sends_for,
)
from tests.conftest import seeded_campaign


async def _revoke(db: Database, contact_id: int) -> None:
    async with db.session() as session:
        await record_consent(
            session=session, tenant_id="demo", contact_id=contact_id,
            status=ConsentStatus.REVOKED, source="api", method="web-form",
            wording_version="prefs-v1", recorded_by="test",
        )  # fmt: skip


async def test_claims_are_exclusive_and_respect_the_newest_consent(db: Database) -> None:
    campaign_id, _ = await seeded_campaign(db, 30)
    async with db.read() as conn:
        consent = await current_consent(conn, contact_ids=range(1, 31))
    granted = [c for c, s in consent.items() if s == ConsentStatus.GRANTED][:6]
    async with db.write() as conn:
        await ensure_send_rows(conn, campaign_id=campaign_id, contact_ids=granted, domain="x.test")
        await ensure_send_rows(conn, campaign_id=campaign_id, contact_ids=granted, domain="x.test")
    async with db.read() as conn:
        sends = await sends_for(conn, campaign_id=campaign_id, contact_ids=granted)
    assert len(sends) == 6, "a second ensure adds no rows"
    assert sends[0].message_id == f"<{campaign_id}.{sends[0].contact_id}@x.test>"
    revoked_send, revoked_contact = sends[0].id, sends[0].contact_id
    await _revoke(db, revoked_contact)

    ids = [s.id for s in sends]
    links = {i: [f"https://shop.test/p/{i}", "https://shop.test/"] for i in ids}
    async with db.write() as conn:
        first = await claim_for_dispatch(conn, send_ids=ids, provider="smtp", links=links)
    async with db.write() as conn:
        second = await claim_for_dispatch(
            conn, send_ids=ids, provider="smtp", links={i: ["https://elsewhere.test/"] for i in ids}
        )
    assert first == set(ids) - {revoked_send}
    assert second == set(), "a claimed send is never claimed again"
    async with db.read() as conn:
        counts = await send_counts(conn, campaign_id=campaign_id)
    assert counts[SendStatus.DISPATCHED] == 5 and counts[SendStatus.PENDING] == 1
    # The links of an email stored with its claim, and only of those claimed.
    async with db.read_session() as session:
        rows = [await session.get(Send, i) for i in ids]
    stored = {row.id: row.links for row in rows if row is not None}
    assert stored == {i: (None if i == revoked_send else links[i]) for i in ids}


async def test_consent_ledger_is_append_only(db: Database) -> None:
    await seeded_campaign(db, 5)
    async with db.read() as conn:
        contact_id = next(iter(await current_consent(conn, contact_ids=range(1, 6))))
    await _revoke(db, contact_id)
    async with db.session() as session:
        await record_consent(
            session=session, tenant_id="demo", contact_id=contact_id,
            status=ConsentStatus.GRANTED, source="signup-form", method="double-opt-in",
            wording_version="newsletter-v3", recorded_by="test",
        )  # fmt: skip
    async with db.read_session() as session:
        history = await consent_history(session=session, contact_id=contact_id)
    assert [r.status for r in history] == ["granted", "revoked", "granted"]
    assert history[-1].wording_version == "newsletter-v3"
    async with db.read() as conn:
        assert (await current_consent(conn, contact_ids=[contact_id]))[contact_id] == "granted"


async def test_migrations_match_the_models(db: Database) -> None:
    """Every model change ships with its migration (alembic check, on both backends)."""
    await asyncio.to_thread(command.check, alembic_config(db.url))


async def test_the_synchronous_sqlite_claim_matches_the_async_one(sqlite_db: Database) -> None:
    campaign_id, _ = await seeded_campaign(sqlite_db, 20)
    async with sqlite_db.read() as conn:
        consent = await current_consent(conn, contact_ids=range(1, 21))
    granted = [c for c, s in consent.items() if s == ConsentStatus.GRANTED][:4]
    async with sqlite_db.write() as conn:
        await ensure_send_rows(conn, campaign_id=campaign_id, contact_ids=granted, domain="x.test")
    async with sqlite_db.read() as conn:
        sends = await sends_for(conn, campaign_id=campaign_id, contact_ids=granted)
    await _revoke(sqlite_db, sends[0].contact_id)
    raw = sqlite3.connect(sqlite_path(sqlite_db.url), isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        links = {s.id: [f"https://shop.test/p/{s.id}?a=1&b=é"] for s in sends}
        first = claim_for_dispatch_sqlite(raw, [s.id for s in sends], "smtp", links)
        raw.execute("COMMIT")
        again = claim_for_dispatch_sqlite(raw, [s.id for s in sends], "smtp")
    finally:
        raw.close()
    assert first == {s.id for s in sends[1:]} and again == set()
    async with sqlite_db.read_session() as session:
        row = await session.get(Send, sends[1].id)
        revoked = await session.get(Send, sends[0].id)
    assert row is not None and row.status == SendStatus.DISPATCHED and row.attempts == 1
    assert row.dispatched_at is not None and row.dispatched_at.tzinfo is not None
    assert row.links == links[sends[1].id]  # read back by the ORM as it wrote them
    assert revoked is not None and revoked.links is None
