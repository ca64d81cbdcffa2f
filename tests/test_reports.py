"""Reports through the API, on SQLite and PostgreSQL: every figure counted once per email as
sends, provider reports, opens, clicks and orders arrive; orders attributed by last human click
(open-only apart, machines never); the rollups equal a rebuild from the raw tables; a holdout's
lift; cohorts; and no tenant sees another's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlmodel import col
from temporalio.client import Client

from api.main import create_app
from tailor.config import DEV_UNSUBSCRIBE_SECRET, Settings
from tailor.db import Database
from tailor.models import Contact, Send, SendStatus, Tenant
from tailor.sending.unsubscribe import unsubscribe_token
from tailor.store.reports import sum_rollups
from tailor.store.rollups import rebuild_campaign
from tailor.store.sends import Accepted, claim_for_dispatch, mark, mark_sent
from tailor.store.tracking import record_hits
from tests.conftest import key_headers, other_tenant_headers
from tests.test_esp_webhook_api import Mailing, mailing, post_sendgrid
from tests.test_esp_webhooks import sg_key, sg_setting


@asynccontextmanager
async def api(
    db: Database, temporal: Client | None = None, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    key = sg_key()
    settings = Settings(
        database_url=db.url, temporal_search_attributes=False, redis_url=None,
        sendgrid_webhook_public_key=sg_setting(key), **overrides,
    )  # fmt: skip
    app = create_app(settings, temporal)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            client.sendgrid_key = key  # type: ignore[attr-defined]
            yield client


async def sent(db: Database, contacts: int = 10, *, control: int = 0) -> Mailing:
    """A campaign accepted by SendGrid, alternately written by the LLM and the rules tier; the
    last ``control`` people held out as a control group instead. Contacts get user ids u<id>."""
    m = await mailing(db, contacts=contacts)
    mailed, held = m.sends[: len(m.sends) - control], m.sends[len(m.sends) - control :]
    async with db.write() as conn:
        for contact_id in {send.contact_id for send in m.sends}:
            await conn.execute(
                update(Contact)
                .where(col(Contact.id) == contact_id)
                .values(external_id=f"u{contact_id}")
            )
        if held:
            ids = [s.id for s in held if s.id is not None]
            await conn.execute(update(Send).where(col(Send.id).in_(ids)).values(control=True))
            await mark(conn, send_ids=ids, status=SendStatus.HELD_OUT,
                       from_status=SendStatus.PENDING)  # fmt: skip
        claimed = await claim_for_dispatch(
            conn, send_ids=[s.id for s in mailed if s.id is not None], provider="sendgrid"
        )
        await mark_sent(
            conn,
            accepted=[
                Accepted(s.id, f"sg-{s.id}", "openai" if i % 2 == 0 else "rules", {})
                for i, s in enumerate(mailed)
                if s.id in claimed
            ],
        )
    assert len(claimed) == len(mailed)
    return m


async def order(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    send: Send,
    message_id: str,
    revenue: float,
    at: datetime | None = None,
) -> None:
    body = {
        "type": "track", "event": "Order Completed", "userId": f"u{send.contact_id}",
        "messageId": message_id, "properties": {"revenue": revenue, "currency": "USD"},
        "timestamp": (at or datetime.now(UTC)).isoformat(),
    }  # fmt: skip
    response = await client.post("/v1/track", json=body, headers=headers)
    assert response.status_code == 200, response.text


async def engage(client: httpx.AsyncClient, headers: dict[str, str], send: Send, kind: str) -> None:
    response = await client.post(
        "/v1/events/engagement", json={"type": kind, "message_id": send.message_id},
        headers=headers,
    )  # fmt: skip
    assert response.status_code == 200, response.text


async def report(client: httpx.AsyncClient, headers: dict[str, str], campaign: str) -> Any:
    response = await client.get(f"/v1/reports/campaigns/{campaign}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def rollup_rows(db: Database, campaign_id: str) -> list[tuple[Any, ...]]:
    async with db.read() as conn:
        sums = await sum_rollups(
            conn, tenant_id="demo", campaign_ids=[campaign_id],
            by=("hour", "generator", "provider", "control"),
        )  # fmt: skip
    return sorted((tuple(s.group.values()), tuple(s.counts.items())) for s in sums)


async def test_campaign_report_counts_each_email_once_and_equals_a_rebuild(db: Database) -> None:
    m = await sent(db)
    s = m.sends
    headers = await key_headers(db)
    async with api(db) as client:
        key = client.sendgrid_key  # type: ignore[attr-defined]
        batch = [
            *(m.event(i, "delivered", f"d-{i}") for i in range(6)),
            m.event(0, "delivered", "d-0-again"),  # a second report of one delivery
            m.event(6, "bounce", "b-6", type="bounce", reason="550 unknown user"),
            m.event(1, "spamreport", "c-1"),
        ]
        assert (await post_sendgrid(client, key, batch)).status_code == 200
        for send, kind in [(s[0], "open"), (s[0], "open"), (s[0], "click"), (s[2], "open")]:
            await engage(client, headers, send, kind)
        await order(client, headers, s[0], "order-1", 42.50)  # clicked: the email's
        await order(client, headers, s[0], "order-1", 42.50)  # the same order again
        await order(client, headers, s[2], "order-2", 10)  # only opened: the weaker rule
        await order(client, headers, s[3], "order-3", 99)  # neither: not attributed
        for _ in range(2):  # the footer's unsubscribe link, clicked twice
            token = unsubscribe_token(DEV_UNSUBSCRIBE_SECRET, m.campaign_id, s[4].contact_id)
            assert (await client.post(f"/v1/unsubscribe/{token}")).status_code == 200
        got = await report(client, headers, m.campaign_id)
        daily = await client.get(
            f"/v1/reports/campaigns/{m.campaign_id}?series=day", headers=headers
        )
        hourly = await client.get(
            f"/v1/reports/campaigns/{m.campaign_id}?series=hour&since=2020-01-01T00:00:00Z",
            headers=headers,
        )
        naive = await client.get(
            f"/v1/reports/campaigns/{m.campaign_id}?since=2020-01-01T00:00:00", headers=headers
        )

    totals = got["totals"]
    for series in (daily.json()["series"], hourly.json()["series"]):
        assert sum(point["sent"] for point in series) == totals["sent"]
        assert sum(point["opened"] for point in series) == totals["opened"]
    assert naive.status_code == 422 and "time zone" in naive.json()["message"]
    assert (totals["sent"], totals["delivered"], totals["bounced"], totals["complained"]) == (
        len(s), 6, 1, 1,
    )  # fmt: skip
    assert (totals["opened"], totals["clicked"], totals["unsubscribed"]) == (2, 1, 1)
    assert (totals["conversions"], totals["revenue"]) == (1, 42.5)
    assert (totals["conversions_open"], totals["revenue_open"]) == (1, 10.0)
    assert totals["reached"] == len(s) - 1
    assert totals["ctor"] == 0.5 and totals["bounce_rate"] == round(1 / len(s), 6)
    tiers = {t["generator"]: t for t in got["by_tier"]}
    assert tiers["openai"]["sent"] + tiers["rules"]["sent"] == len(s)
    assert tiers["openai"]["clicked"] == 1 and tiers["rules"]["clicked"] == 0  # s[0] was openai
    assert [p["provider"] for p in got["by_provider"]] == ["sendgrid"]
    assert got["holdout"] is None
    assert got["attribution"] == {"click_window_hours": 120, "open_window_hours": 24}

    before = await rollup_rows(db, m.campaign_id)
    async with db.write() as conn:
        await rebuild_campaign(conn, campaign_id=m.campaign_id)
    assert await rollup_rows(db, m.campaign_id) == before


async def test_orders_go_to_the_last_human_click_within_the_window(db: Database) -> None:
    first = await sent(db, contacts=6)
    second = await sent(db, contacts=6)  # a later campaign to the same people
    headers = await key_headers(db)
    a, b = first.sends[0], second.sends[0]
    assert a.contact_id == b.contact_id
    now = datetime.now(UTC)
    async with db.write() as conn:
        await record_hits(
            conn,
            hits=[
                {"tenant_id": "demo", "send_id": send.id, "kind": "click", "link_index": 0,
                 "human": human, "rule": None if human else "scanner",
                 "at": now - timedelta(hours=ago)}
                for send, human, ago in [(a, True, 3), (b, False, 1)]  # b: a link scanner's
            ],
        )  # fmt: skip
    async with api(db) as client:
        await order(client, headers, a, "o-1", 20)
        assert (await report(client, headers, first.campaign_id))["totals"]["conversions"] == 1
        assert (await report(client, headers, second.campaign_id))["totals"]["conversions"] == 0
        # Outside the (shortened) click window, and no open: nobody's conversion.
        async with db.write() as conn:
            await conn.execute(
                update(Tenant).where(col(Tenant.id) == "demo").values(attribution_click_hours=2)
            )
        await order(client, headers, a, "o-2", 30)
        got = await report(client, headers, first.campaign_id)
    assert (got["totals"]["conversions"], got["totals"]["revenue"]) == (1, 20.0)
    assert got["totals"]["conversions_open"] == 0
    # Both orders followed the email within the window it had then: lift's measure counts it.
    assert got["totals"]["ordered"] == 1


async def test_holdout_report_shows_lift_of_the_mailed_group_with_an_interval(
    db: Database,
) -> None:
    m = await sent(db, contacts=20, control=6)
    headers = await key_headers(db)
    mailed, held = m.sends[:-6], m.sends[-6:]
    async with api(db) as client:
        for i, send in enumerate(mailed[:5]):
            await order(client, headers, send, f"t-{i}", 10)
        await order(client, headers, held[0], "c-0", 10)
        got = await report(client, headers, m.campaign_id)
    holdout = got["holdout"]
    assert holdout["control_group"]["held_out"] == 6 and holdout["control_group"]["sent"] == 0
    assert holdout["treatment_group"]["ordered"] == 5 and holdout["control_group"]["ordered"] == 1
    lift = holdout["lift"]
    assert lift["open"] is None and lift["click"] is None  # a control not mailed cannot open
    conversion = lift["conversion"]
    n = len(mailed)
    assert conversion["treatment_rate"] == 5 / n and conversion["control_rate"] == 1 / 6
    assert conversion["difference"] == 5 / n - 1 / 6
    low, high = conversion["ci95"]
    assert low < conversion["difference"] < high and conversion["small_sample"] is True


async def test_cohorts_deliverability_and_journey_reports(db: Database) -> None:
    m = await sent(db, contacts=8)
    headers = await key_headers(db)
    async with api(db) as client:
        await engage(client, headers, m.sends[0], "open")
        await engage(client, headers, m.sends[1], "click")
        await order(client, headers, m.sends[1], "o-1", 5)
        cohorts = (await client.get("/v1/reports/cohorts?months=2", headers=headers)).json()
        providers = (await client.get("/v1/reports/deliverability", headers=headers)).json()
        missing = await client.get("/v1/reports/journeys/no-such-journey", headers=headers)
        bad = await client.get(
            "/v1/reports/deliverability?since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z",
            headers=headers,
        )
    month = datetime.now(UTC).strftime("%Y-%m")
    [cohort] = [c for c in cohorts["cohorts"] if c["month"] == month]
    assert cohort["contacts"] >= 8
    week0 = cohort["weeks"][0]
    assert (week0["week"], week0["opened"], week0["clicked"], week0["bought"]) == (0, 1, 1, 1)
    assert week0["bought_share"] == round(1 / cohort["contacts"], 6)
    assert providers["providers"][0]["provider"] == "sendgrid"
    assert providers["providers"][0]["sent"] == len(m.sends)
    assert missing.status_code == 404
    assert bad.status_code == 422 and "before until" in bad.json()["message"]


async def test_a_tenant_sees_only_its_own_reports(db: Database) -> None:
    m = await sent(db, contacts=4)
    other = await other_tenant_headers(db)
    async with api(db) as client:
        theirs = await client.get(f"/v1/reports/campaigns/{m.campaign_id}", headers=other)
        providers = (await client.get("/v1/reports/deliverability", headers=other)).json()
        cohorts = (await client.get("/v1/reports/cohorts", headers=other)).json()
    assert theirs.status_code == 404
    assert providers == {"providers": []}
    assert all(not c["weeks"] for c in cohorts["cohorts"])
