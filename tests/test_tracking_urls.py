"""One email's tracked URLs, and the recorder's bounded queue (no database needed)."""

from __future__ import annotations

import logging
import re

import pytest

from tailor.db import Database
from tailor.engagement.tracker import RawHit, Tracker
from tailor.journeys.triggers import TriggerAgent
from tailor.models import utcnow
from tailor.tracking.links import target_for
from tailor.tracking.tokens import TrackingKind, peek_send_id, verify
from tailor.tracking.urls import EmailLinks, TrackingConfig

CONFIG = TrackingConfig("https://t.shop.test", "s" * 32)


def test_links_become_redirects_in_order_and_the_originals_are_kept() -> None:
    links = EmailLinks(CONFIG, "demo", 3, send_id=41)
    html = links.rewrite_html(
        "<p><a href=\"https://shop.test/a?x=1&amp;y=2\">A</a> <a href='http://shop.test/b'>B</a> "
        '<a href="mailto:hi@shop.test">mail</a></p>'
    )
    cta = links.click("https://shop.test/cta")
    assert links.links == [
        "https://shop.test/a?x=1&y=2",
        "http://shop.test/b",
        "https://shop.test/cta",
    ]
    assert 'href="mailto:hi@shop.test"' in html and "shop.test/a" not in html
    tokens = [u.rsplit("/", 1)[1] for u in (*_hrefs(html), cta)]
    for index, token in enumerate(tokens):
        verified = verify(CONFIG.secret, "demo", 3, token)
        assert verified is not None and verified.kind is TrackingKind.CLICK
        assert verified.send_id == 41 and verified.link_index == index
        assert target_for(links.links, index) == links.links[index]
    pixel = links.pixel()
    assert pixel.startswith("https://t.shop.test/t/o/")
    assert peek_send_id(pixel.rsplit("/", 1)[1]) == 41


def _hrefs(html: str) -> list[str]:
    return re.findall(r"""href=["'](https://t\.shop\.test/t/c/[\w-]+)["']""", html)


async def test_a_full_queue_drops_hits_with_a_warning_and_no_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = Database("sqlite+aiosqlite:///:memory:")

    async def no_journeys() -> None:
        raise AssertionError("nothing is recorded here")

    triggers = TriggerAgent(db, no_journeys)  # type: ignore[arg-type]
    tracker = Tracker(db, secret="s", triggers=triggers, features=None, queue_size=1)
    hit = RawHit(
        TrackingKind.OPEN, "secret-token", "GET", "Mozilla/5.0 (X11)", "10.0.0.1", utcnow()
    )
    with caplog.at_level(logging.WARNING):
        tracker.offer(hit)
        tracker.offer(hit)
    assert tracker.dropped == 1
    assert "dropped" in caplog.text and "secret-token" not in caplog.text
    assert "10.0.0.1" not in caplog.text
    await db.dispose()
