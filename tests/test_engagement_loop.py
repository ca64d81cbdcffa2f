"""The engagement loop closed, end to end: an A/B test's emails are sent through the real worker;
a reader opens the pixel and follows a link found in the captured email an hour after it
arrived, then orders; Apple's privacy proxy and a link scanner fetch another reader's. The
campaign report, the A/B variant, its report and the reader's features all show the person, and
none of them the machines."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, update
from sqlmodel import col
from temporalio.testing import WorkflowEnvironment

from tailor.devtools.smtp_sink import read_outbox
from tailor.models import Contact, Send, TrackingHit
from tailor.tracking.tokens import peek_send_id
from tests.conftest import Sink
from tests.test_ab_tests import AbApi, ab  # noqa: F401  (the fixture)

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15"
)
APPLE_PROXY = ("17.58.101.7", 443)  # Mail Privacy Protection fetches from Apple's 17.0.0.0/8
PIXEL = re.compile(r'<img src="[^"]*(/t/o/[A-Za-z0-9_-]+)"')
LINK = re.compile(r'href="[^"]*(/t/c/[A-Za-z0-9_-]+)"')


def _tracked(html: str) -> tuple[str, list[str]]:
    pixel = PIXEL.search(html)
    assert pixel is not None, "the email carries no open pixel"
    return pixel.group(1), LINK.findall(html)


async def test_a_readers_open_click_and_order_reach_everything_that_learns(
    ab: AbApi,  # noqa: F811
    sink: Sink,
    isolated_time_skipping_env: WorkflowEnvironment,
) -> None:
    with isolated_time_skipping_env.auto_time_skipping_disabled():
        started = await ab.start()
        test_id, cell = started["id"], started["cell_campaign_ids"]["A"]
        await ab.wait_for(test_id, "waiting")
        emails = read_outbox(sink.maildir, cell)
        reader, other = emails[0], emails[1]
        reader_html = reader.full().get_body(("html",)).get_content()  # type: ignore[union-attr]
        other_html = other.full().get_body(("html",)).get_content()  # type: ignore[union-attr]
        pixel, links = _tracked(reader_html)
        other_pixel, other_links = _tracked(other_html)
        assert links and other_links
        reader_send = peek_send_id(pixel.rsplit("/", 1)[1])
        other_send = peek_send_id(other_pixel.rsplit("/", 1)[1])
        before = await _features_of(ab, other_send)
        begun = datetime.now(UTC)
        # The reader comes to it an hour after it arrived; the other email has only just landed.
        async with ab.db.write() as conn:
            await conn.execute(
                update(Send)
                .where(col(Send.id) == reader_send)
                .values(sent_at=datetime.now(UTC) - timedelta(hours=1))
            )

        transport = httpx.ASGITransport(app=ab.app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://mail") as browser,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=ab.app, client=APPLE_PROXY),
                base_url="http://mail",
            ) as apple,
        ):
            agent = {"User-Agent": BROWSER}
            assert (await browser.get(pixel, headers=agent)).status_code == 200
            clicked = await browser.get(links[0], headers=agent)
            assert clicked.status_code == 302 and clicked.headers["location"].startswith("http")
            # Apple's proxy fetches the other reader's pixel; their gateway clicks every link.
            assert (await apple.get(other_pixel, headers={"User-Agent": "Mozilla/5.0"})).is_success
            for link in other_links:
                scanned = await browser.get(link, headers={"User-Agent": BROWSER})
                assert scanned.status_code == 302
        await ab.app.state.tracker.drain(now=True)

        # The reader is known to the shop by its own user id; it orders within the window.
        identified = await ab.ok("POST", "/v1/identify", json={
            "type": "identify", "userId": "reader-1", "traits": {"email": reader.to},
        })  # fmt: skip
        assert identified["accepted"] == 1
        ordered = await ab.ok("POST", "/v1/track", json={
            "type": "track", "event": "Order Completed", "userId": "reader-1",
            "messageId": "order-9001", "properties": {"revenue": 59.9, "currency": "USD"},
        })  # fmt: skip
        assert ordered["accepted"] == 1

        report = await ab.ok("GET", f"/v1/reports/campaigns/{cell}")
        variant = {v["key"]: v for v in (await ab.ok("GET", f"/v1/ab-tests/{test_id}"))["variants"]}
        ab_report = await ab.ok("GET", f"/v1/reports/ab-tests/{test_id}")
        await ab.ok("POST", f"/v1/ab-tests/{test_id}/cancel")

    totals = report["totals"]
    assert (totals["opened"], totals["clicked"]) == (1, 1)  # the person, not the machines
    assert (totals["conversions"], totals["revenue"]) == (1, 59.9)
    assert totals["ctor"] == 1.0
    assert variant["A"]["successes"] == 1  # the test's metric is clicks
    reported = {v["key"]: v for v in ab_report["variants"]}
    assert (reported["A"]["clicked"], reported["B"]["clicked"]) == (1, 0)
    async with ab.db.read_session() as session:
        person = (
            await session.execute(select(Contact).where(col(Contact.external_id) == "reader-1"))
        ).scalar_one()
        machine = (
            await session.execute(select(TrackingHit).where(col(TrackingHit.send_id) == other_send))
        ).scalars().all()  # fmt: skip
    # The person's real-time features learned of the open, the click and the order.
    assert person.last_open_at is not None and person.last_open_at >= begun
    assert person.last_click_at is not None and person.last_click_at >= begun
    assert person.last_purchase_at is not None and person.order_count >= 1
    # The machines were recorded, flagged, and taught nothing.
    assert len(machine) == 1 + len(other_links)
    assert all(not hit.human and hit.rule for hit in machine)
    assert await _features_of(ab, other_send) == before


async def _features_of(api: AbApi, send_id: int | None) -> tuple[object, ...]:
    async with api.db.read_session() as session:
        send = await session.get(Send, send_id)
        assert send is not None
        contact = await session.get(Contact, send.contact_id)
        assert contact is not None
        return (contact.last_open_at, contact.last_click_at, contact.engagement_score)
