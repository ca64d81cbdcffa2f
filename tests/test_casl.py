"""CASL: implied consent lapses (two years after a purchase, six months after an inquiry)
unless express consent comes after it; a lapsed contact is not mailed, is listed before it
lapses, and the lapse is recorded in the ledger. Every email names a second way to reach the
sender besides the postal address."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tailor.consent.casl import LAPSED, lapses_at
from tailor.consent.ledger import ChainCheck, LedgerEntry
from tailor.db import Database
from tailor.devtools.smtp_sink import read_outbox
from tailor.models import utcnow
from tailor.payloads import FeaturesPage
from tailor.profiles.daily import DailyFeatures
from tailor.store.consent import append_to_ledger, current_consent, ledger_pages
from tests.conftest import (
    Sink,
    key_headers,
    other_tenant_headers,
    run_campaign,
    seeded_campaign,
    settings_for,
    task_queue,
)
from tests.test_contacts import app_settings
from worker import build_worker

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_implied_consent_lapses_after_its_window_and_express_consent_does_not() -> None:
    assert lapses_at("granted", "implied-purchase", T0) == T0 + timedelta(days=730)
    assert lapses_at("granted", "implied-inquiry", T0) == T0 + timedelta(days=183)
    assert lapses_at("granted", "double-opt-in", T0) is None
    assert lapses_at("revoked", "implied-purchase", T0) is None


def _grant(contact_id: int, method: str, at: datetime) -> LedgerEntry:
    return LedgerEntry(
        tenant_id="demo", contact_id=contact_id, status="granted", source="crm-import",
        method=method, wording_version="-", recorded_by="test", recorded_at=at,
    )  # fmt: skip


async def test_a_lapsed_implied_consent_is_not_mailed_listed_and_recorded(
    db: Database, time_skipping_env: WorkflowEnvironment, sink: Sink
) -> None:
    campaign_id, consenting = await seeded_campaign(db, 30)
    async with db.read() as conn:
        ids = sorted((await conn.execute(text("SELECT id FROM contact"))).scalars())
        granted = await current_consent(conn, contact_ids=ids)
    people = [c for c in ids if granted.get(c) == "granted"][:3]
    lapsed, valid, renewed = people
    now = utcnow()
    async with db.write() as conn:
        await append_to_ledger(conn, [
            _grant(lapsed, "implied-purchase", now - timedelta(days=731)),
            _grant(valid, "implied-inquiry", now - timedelta(days=100)),
            _grant(renewed, "implied-purchase", now - timedelta(days=731)),
        ])  # fmt: skip
        await append_to_ledger(conn, [_grant(renewed, "web-form", now)])  # express, later

    # Listed before they lapse (and the lapsed one too), soonest first; not the express one.
    app = create_app(app_settings(db))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            analyst = await key_headers(db, "demo", "analyst")
            listed = await http.get("/v1/consent/lapsing", params={"within_days": 90},
                                    headers=analyst)  # fmt: skip
            assert listed.status_code == 200, listed.text
            assert [(r["contact_id"], r["method"]) for r in listed.json()["data"]] == [
                (lapsed, "implied-purchase"), (valid, "implied-inquiry")
            ]  # fmt: skip
            soon = await http.get("/v1/consent/lapsing", params={"within_days": 30},
                                  headers=analyst)  # fmt: skip
            assert [r["contact_id"] for r in soon.json()["data"]] == [lapsed]
            acme = await other_tenant_headers(db, "acme")
            other = await http.get("/v1/consent/lapsing", params={"within_days": 90}, headers=acme)
            assert other.json() == {"data": [], "count": 0}

    # The campaign mails everyone consenting but the lapsed one, and each email names a second
    # way to reach the sender.
    queue = task_queue()
    settings = settings_for(db, sink, temporal_task_queue=queue)
    async with build_worker(time_skipping_env.client, db, settings, queue):
        outcome = await run_campaign(time_skipping_env.client, campaign_id, queue)
    assert outcome.sent == consenting - 1
    async with db.read() as conn:
        emails: dict[int, str] = dict(
            (await conn.execute(text("SELECT id, email FROM contact"))).all()
        )
    mailed = {e.to for e in read_outbox(sink.maildir, campaign_id)}
    assert emails[lapsed] not in mailed and {emails[valid], emails[renewed]} <= mailed
    body = read_outbox(sink.maildir, campaign_id)[0].full().get_body(("plain",))
    assert body is not None and "\nContact: " in body.get_content()

    # The daily job records the lapse in the ledger, once, in the chain.
    for _ in range(2):
        await DailyFeatures(db).derive_page(FeaturesPage(0, 1000))
    async with db.read() as conn:
        assert (await current_consent(conn, contact_ids=[lapsed, valid, renewed])) == {
            lapsed: "revoked",
            valid: "granted",
            renewed: "granted",
        }
        check = ChainCheck()
        rows = [r async for page in ledger_pages(conn) for r in page]
    for row in rows:
        check.add(row)
    assert check.finish() == []
    assert [r["method"] for r in rows if r["contact_id"] == lapsed][-2:] == [
        "implied-purchase",
        LAPSED,
    ]
