"""Open pixel and click redirect end to end: a campaign is sent through the real worker, and a
reader (or a machine) fetches the pixel and follows the links found in the captured email."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Literal

import httpx
import pytest
from sqlalchemy import select, update
from sqlmodel import col
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from api.recorder import RecorderProcess
from api.routes.tracking import TrackingFastPath
from tailor.db import Database
from tailor.delivery.providers.setup import build_router
from tailor.demo.seed import seed_demo
from tailor.devtools.esp_stub import STUB_SENDGRID_KEY, running_esp_stub
from tailor.devtools.smtp_sink import read_outbox
from tailor.models import Contact, Engagement, Send, SendStatus, TrackingHit, utcnow
from tailor.tracking.tokens import peek_send_id, sign_click, sign_open
from tests.conftest import Sink, key_headers, other_tenant_headers, settings_for, task_queue
from worker import build_worker

TRACKING_URL = "https://t.shop.test"
BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15"
)
APPLE_MPP = "Mozilla/5.0"
_PIXEL = re.compile(r'<img src="' + re.escape(TRACKING_URL) + r'/t/o/([A-Za-z0-9_-]+)"')
_CLICK = re.compile(r'href="' + re.escape(TRACKING_URL) + r'/t/c/([A-Za-z0-9_-]+)"')


class Tracked:
    def __init__(
        self,
        client: httpx.AsyncClient,
        public: httpx.AsyncClient,
        app: Any,
        db: Database,
        sink: Sink,
    ) -> None:
        self.http = client
        self.public = public  # a mail client or browser: no API key
        self.app = app
        self.db = db
        self.sink = sink

    async def send_campaign(self, **extra: object) -> str:
        async with self.db.read() as conn:
            version_id = (
                await conn.exec_driver_sql("SELECT max(id) FROM template_version")
            ).scalar_one()
        started = await self.http.post(
            "/v1/campaigns", json={"name": "Tracked", "template_version_id": version_id, **extra}
        )
        assert started.status_code == 202, started.text
        campaign_id: str = started.json()["id"]
        async with asyncio.timeout(60):
            while True:
                body = (await self.http.get(f"/v1/campaigns/{campaign_id}")).json()
                if body["status"] not in ("running", "paused"):
                    break
                await asyncio.sleep(0.1)
        assert body["status"] == "completed"
        return campaign_id

    def html_of(self, campaign_id: str) -> list[str]:
        emails = read_outbox(self.sink.maildir, campaign_id)
        assert emails
        out = []
        for email in emails:
            part = email.full().get_body(("html",))
            assert part is not None
            out.append(part.get_content())
        return out

    async def fetch(self, url_path: str, agent: str, method: str = "GET") -> httpx.Response:
        return await self.public.request(method, url_path, headers={"User-Agent": agent})

    async def drained(self) -> None:
        await self.app.state.tracker.drain()

    async def read_a_while_after_delivery(self, send_id: int) -> None:
        """The reader opens the email an hour after it arrived (not a scanner on delivery)."""
        async with self.db.write() as conn:
            await conn.execute(
                update(Send)
                .where(Send.id == send_id)  # type: ignore[arg-type]
                .values(sent_at=utcnow() - timedelta(hours=1))
            )

    async def hits(self, send_id: int) -> list[TrackingHit]:
        async with self.db.read_session() as session:
            rows = await session.execute(
                select(TrackingHit).where(TrackingHit.send_id == send_id).order_by(TrackingHit.id)  # type: ignore[arg-type]
            )
            return list(rows.scalars())

    async def engagements(self, send_id: int) -> set[str]:
        async with self.db.read_session() as session:
            rows = await session.execute(
                select(col(Engagement.metric)).where(col(Engagement.send_id) == send_id)
            )
            return set(rows.scalars())

    async def send_row(self, send_id: int) -> Send:
        async with self.db.read_session() as session:
            send = await session.get(Send, send_id)
            assert send is not None
            return send


@asynccontextmanager
async def tracking_app(
    env: WorkflowEnvironment,
    db: Database,
    sink: Sink,
    recorder: Literal["inline", "process"] = "inline",
    **settings: object,
) -> AsyncIterator[Tracked]:
    """The API and a worker on the demo tenant (six contacts), tracking at ``TRACKING_URL``."""
    await seed_demo(db, contacts=6)
    config = settings_for(
        db, sink, temporal_task_queue=task_queue(), tracking_url=TRACKING_URL,
        # The recorder's own process connects to Temporal by address, like ``tailor api``.
        temporal_address=env.client.service_client.config.target_host, **settings,
    )  # fmt: skip
    app = create_app(config, temporal_client=env.client, tracking_recorder=recorder)
    router = build_router(config)
    worker = build_worker(env.client, db, config, config.temporal_task_queue, router)
    async with worker, app.router.lifespan_context(app):
        headers = await key_headers(db, "demo", "admin")
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(
                transport=transport, base_url="http://tailor", headers=headers
            ) as client,
            httpx.AsyncClient(transport=transport, base_url=TRACKING_URL) as public,
        ):
            yield Tracked(client, public, app, db, sink)
    await router.close()


@pytest.fixture
async def tracked(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink
) -> AsyncIterator[Tracked]:
    async with tracking_app(time_skipping_env, db, sink) as app:
        yield app


def _path(url_kind: str, token: str) -> str:
    return f"/t/{url_kind}/{token}"


async def test_a_reader_opens_and_clicks_through_the_real_urls(tracked: Tracked) -> None:
    campaign_id = await tracked.send_campaign()
    html = tracked.html_of(campaign_id)[0]
    pixel = _PIXEL.search(html)
    clicks = _CLICK.findall(html)
    assert pixel is not None and html.rstrip().endswith("</body></html>")
    assert html.index(pixel.group(0)) > html.index("<hr>")  # at the end, after the footer
    assert len(clicks) == 1  # the call to action; the unsubscribe link is not tracked
    assert "/v1/unsubscribe/" in html
    send_id = peek_send_id(pixel.group(1))
    assert send_id is not None and peek_send_id(clicks[0]) == send_id
    send = await tracked.send_row(send_id)
    assert send.links and send.links[0].startswith("http")
    assert send.explain is not None and send.explain["tracked"] is True
    why = (await tracked.http.get(f"/v1/sends/{send_id}/explain")).json()
    assert why["explain"]["tracked"] is True
    await tracked.read_a_while_after_delivery(send_id)

    opened = await tracked.fetch(_path("o", pixel.group(1)), BROWSER)
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    assert opened.content.startswith(b"GIF89a")
    assert "no-store" in opened.headers["cache-control"]
    assert opened.headers["pragma"] == "no-cache"
    clicked = await tracked.fetch(_path("c", clicks[0]), BROWSER)
    assert clicked.status_code == 302
    assert clicked.headers["location"] == send.links[0]
    await tracked.drained()

    hits = await tracked.hits(send_id)
    assert [(h.kind, h.human, h.link_index) for h in hits] == [
        ("open", True, None),
        ("click", True, 0),
    ]
    assert await tracked.engagements(send_id) == {"open", "click"}
    contact = (await tracked.http.get(f"/v1/contacts/{send.contact_id}")).json()
    assert contact["last_open_at"] is not None
    async with tracked.db.read_session() as session:
        person = await session.get(Contact, send.contact_id)
        assert person is not None and person.last_click_at is not None

    # A second open counts as a hit, not as another first open.
    await tracked.fetch(_path("o", pixel.group(1)), BROWSER)
    await tracked.drained()
    assert len(await tracked.hits(send_id)) == 3
    assert await tracked.engagements(send_id) == {"open", "click"}


async def test_the_served_api_records_in_a_process_of_its_own(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink
) -> None:
    """``tailor api`` records hits in a child process (api/recorder.py): what the pixel and
    the redirect hand over is stored and engaged there; a child that dies is started again,
    and what was offered while it was gone is counted as dropped, never half-recorded."""
    async with tracking_app(time_skipping_env, db, sink, recorder="process") as tracked:
        recorder = tracked.app.state.tracker
        assert isinstance(recorder, RecorderProcess)
        campaign_id = await tracked.send_campaign()
        html = tracked.html_of(campaign_id)[0]
        pixel, link = _PIXEL.search(html), _CLICK.findall(html)[0]
        assert pixel is not None
        send_id = peek_send_id(link)
        assert send_id is not None
        await tracked.read_a_while_after_delivery(send_id)

        assert (await tracked.fetch(_path("o", pixel.group(1)), BROWSER)).status_code == 200
        clicked = await tracked.fetch(_path("c", link), BROWSER)
        assert clicked.status_code == 302
        await tracked.drained()
        assert [(h.kind, h.human) for h in await tracked.hits(send_id)] == [
            ("open", True), ("click", True),
        ]  # fmt: skip
        assert await tracked.engagements(send_id) == {"open", "click"}

        child = recorder.pid
        assert child is not None and child != os.getpid()
        os.kill(child, signal.SIGKILL)
        async with asyncio.timeout(60):
            while recorder.pid in (None, child):
                # Offered while no child runs: dropped and counted.
                await tracked.fetch(_path("o", pixel.group(1)), BROWSER)
                await asyncio.sleep(0.05)
        assert recorder.restarts == 1 and recorder.dropped >= 1
        before = len(await tracked.hits(send_id))
        assert (await tracked.fetch(_path("c", link), BROWSER)).status_code == 302
        await tracked.drained()
        assert len(await tracked.hits(send_id)) == before + 1
    assert recorder.pid is None  # stopped with the app


async def test_machine_opens_and_clicks_are_stored_but_not_counted(tracked: Tracked) -> None:
    campaign_id = await tracked.send_campaign()
    html = tracked.html_of(campaign_id)[0]
    pixel = _PIXEL.search(html)
    clicks = _CLICK.findall(html)
    assert pixel is not None and clicks
    send_id = peek_send_id(pixel.group(1))
    assert send_id is not None

    # Apple Mail Privacy Protection prefetches the image as the email arrives.
    mpp = await tracked.fetch(_path("o", pixel.group(1)), APPLE_MPP)
    assert mpp.status_code == 200
    # The receiving server's link scanner follows the link seconds after delivery.
    scanner = await tracked.fetch(_path("c", clicks[0]), BROWSER)
    assert scanner.status_code == 302
    head = await tracked.fetch(_path("c", clicks[0]), BROWSER, method="HEAD")
    assert head.status_code == 302
    await tracked.drained()

    hits = await tracked.hits(send_id)
    assert [(h.kind, h.human, h.rule) for h in hits] == [
        ("open", False, "apple-mpp-user-agent"),
        ("click", False, "scanner-click-on-delivery"),
        ("click", False, "head-request"),
    ]
    assert await tracked.engagements(send_id) == set()


async def test_tampered_and_foreign_tokens_record_nothing(tracked: Tracked) -> None:
    campaign_id = await tracked.send_campaign()
    html = tracked.html_of(campaign_id)[0]
    pixel = _PIXEL.search(html)
    clicks = _CLICK.findall(html)
    assert pixel is not None and clicks
    send_id = peek_send_id(pixel.group(1))
    assert send_id is not None
    await tracked.read_a_while_after_delivery(send_id)

    def tamper(token: str) -> str:
        return token[:-2] + ("AA" if token[-2:] != "AA" else "BB")

    bad_pixel = await tracked.fetch(_path("o", tamper(pixel.group(1))), BROWSER)
    assert bad_pixel.status_code == 200 and bad_pixel.content.startswith(b"GIF89a")
    assert "no-store" in bad_pixel.headers["cache-control"]
    junk = await tracked.fetch(_path("o", "not-a-token!"), BROWSER)
    assert junk.status_code == 200 and junk.content.startswith(b"GIF89a")
    bad_click = await tracked.fetch(_path("c", tamper(clicks[0])), BROWSER)
    assert bad_click.status_code == 404 and bad_click.json()["message"]

    # Signed with another tenant's key (right secret, wrong tenant): not this send's.
    await other_tenant_headers(tracked.db)
    secret = tracked.app.state.settings.tracking_secret
    foreign_open = sign_open(secret, "acme", 1, send_id)
    foreign_click = sign_click(secret, "acme", 1, send_id, 0)
    assert (await tracked.fetch(_path("c", foreign_click), BROWSER)).status_code == 404
    assert (await tracked.fetch(_path("o", foreign_open), BROWSER)).status_code == 200
    # A link index the email does not have is no target either (no open redirect).
    beyond = sign_click(secret, "demo", 1, send_id, 7)
    assert (await tracked.fetch(_path("c", beyond), BROWSER)).status_code == 404
    await tracked.drained()

    assert await tracked.hits(send_id) == []
    assert await tracked.engagements(send_id) == set()


@pytest.mark.parametrize("switch", ["tenant", "campaign"])
async def test_tracking_off_for_the_tenant_or_the_campaign_sends_direct_links(
    tracked: Tracked, switch: str
) -> None:
    if switch == "tenant":
        off = await tracked.http.patch("/v1/tenant/settings", json={"tracking_enabled": False})
        assert off.status_code == 200, off.text
        campaign_id = await tracked.send_campaign()
    else:
        campaign_id = await tracked.send_campaign(tracking=False)
    for html in tracked.html_of(campaign_id):
        assert "/t/o/" not in html and "/t/c/" not in html and TRACKING_URL not in html
        assert re.search(r'<a href="https?://', html)
    async with tracked.db.read_session() as session:
        sends = (
            await session.execute(select(Send).where(Send.campaign_id == campaign_id))  # type: ignore[arg-type]
        ).scalars()
        sent = [s for s in sends if s.explain is not None]
    assert sent and all(s.links is None and s.explain["tracked"] is False for s in sent)  # type: ignore[index]


async def test_a_click_before_the_send_is_recorded_sent_still_redirects(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink
) -> None:
    """The provider takes the emails but its answer never comes: the sends stay dispatched,
    never recorded sent, and their readers may already have them. Their links still work,
    because they were stored with the claim, before the request went out."""
    with running_esp_stub() as esp:
        esp.sendgrid.drop_after_read = True
        async with tracking_app(
            time_skipping_env, db, sink, providers=["sendgrid"], provider_timeout_s=5.0,
            sendgrid_api_key=STUB_SENDGRID_KEY, sendgrid_base_url=esp.url,
        ) as tracked:  # fmt: skip
            await tracked.send_campaign()
            delivered = esp.messages("sendgrid")
            assert delivered
            clicks = _CLICK.findall(delivered[0].html)
            send_id = peek_send_id(clicks[0])
            assert send_id is not None
            send = await tracked.send_row(send_id)
            assert send.status == SendStatus.DISPATCHED and send.sent_at is None
            assert send.links

            clicked = await tracked.fetch(_path("c", clicks[0]), BROWSER)
            assert clicked.status_code == 302
            assert clicked.headers["location"] == send.links[0]
            await tracked.drained()
            assert [(h.kind, h.link_index) for h in await tracked.hits(send_id)] == [("click", 0)]


async def test_the_fast_path_answers_as_the_documented_routes_do(tracked: Tracked) -> None:
    """The pixel and the redirect are answered in front of the app (api/routes/tracking.py);
    the FastAPI routes behind it, which the OpenAPI document describes, answer the same."""
    campaign_id = await tracked.send_campaign()
    html = tracked.html_of(campaign_id)[0]
    pixel, link = _PIXEL.search(html), _CLICK.findall(html)[0]
    assert pixel is not None
    layer: Any = tracked.app.middleware_stack
    while not isinstance(layer, TrackingFastPath):
        layer = layer.app
    behind = layer.app

    async def routes_only(scope: Any, receive: Any, send: Any) -> None:
        scope["app"] = tracked.app
        await behind(scope, receive, send)

    transport = httpx.ASGITransport(app=routes_only)
    async with httpx.AsyncClient(transport=transport, base_url=TRACKING_URL) as slow:
        for method, path in [
            ("GET", _path("o", pixel.group(1))), ("HEAD", _path("o", pixel.group(1))),
            ("GET", _path("o", "junk")), ("GET", _path("c", link)), ("HEAD", _path("c", link)),
            ("GET", _path("c", link[:-2] + "AA")),
        ]:  # fmt: skip
            fast = await tracked.public.request(method, path, headers={"User-Agent": BROWSER})
            documented = await slow.request(method, path, headers={"User-Agent": BROWSER})
            assert fast.status_code == documented.status_code, path
            assert fast.content == documented.content, path
            for header in ("content-type", "cache-control", "pragma", "location"):
                assert fast.headers.get(header) == documented.headers.get(header), header
            assert fast.headers["x-request-id"]
    await tracked.drained()
