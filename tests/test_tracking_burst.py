"""Security scanners click every link of an email within seconds, and their first click looks
like a person's: the recorder holds a person's click on an email with links to spare for the
burst window, so a whole burst is flagged machine and only a lone or unhurried click counts.
Request shapes as recorded from Microsoft Safe Links and from a reader's iPhone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.engagement.tracker import RawHit, Tracker
from tailor.journeys.triggers import JourneyStarter, TriggerAgent
from tailor.models import TrackingHit, utcnow
from tailor.store.campaigns import create_campaign
from tailor.store.consent import consenting_contacts
from tailor.store.sends import Accepted, claim_for_dispatch, ensure_send_rows, mark_sent, sends_for
from tailor.store.tracking import engaged
from tailor.tracking.machines import BURST_SECONDS
from tailor.tracking.tokens import TrackingKind, sign_click

SECRET = "burst-test-secret"
LINKS = ["https://shop.test/p/1", "https://shop.test/cart", "https://shop.test/"]
# Safe Links follows each link from Microsoft's network with an ordinary browser's agent.
SAFE_LINKS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36",
    "40.94.87.12",
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
    "198.51.100.7",
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Email:
    send_id: int
    delivered_at: datetime


async def _no_journeys() -> JourneyStarter:
    raise AssertionError("no journey reacts to these events")


@pytest.fixture
async def email(db: Database) -> Email:
    """A three-link email delivered an hour ago (so no click is a scanner's on delivery)."""
    seeded = await seed_demo(db, contacts=5)
    async with db.session() as session:
        campaign = await create_campaign(
            session=session, tenant_id=seeded.tenant_id, name="Burst",
            template_version_id=seeded.template_version_id, segment={},
        )  # fmt: skip
    async with db.read() as conn:
        person = (await consenting_contacts(conn, tenant_id=seeded.tenant_id, limit=1))[0]
    async with db.write() as conn:
        await ensure_send_rows(conn, campaign_id=campaign.id, contact_ids=[person.id],
                               domain="x.test")  # fmt: skip
    async with db.read() as conn:
        send_id = (await sends_for(conn, campaign_id=campaign.id, contact_ids=[person.id]))[0].id
    delivered = utcnow() - timedelta(hours=1)
    async with db.write() as conn:
        await claim_for_dispatch(conn, send_ids=[send_id], provider="smtp",
                                 links={send_id: LINKS})  # fmt: skip
        await mark_sent(conn, accepted=[Accepted(send_id, "pmid", "rules", {})], at=delivered)
    return Email(send_id, delivered)


@pytest.fixture
async def clock(email: Email) -> Clock:
    return Clock(email.delivered_at + timedelta(minutes=40))


@pytest.fixture
async def tracker(db: Database, clock: Clock) -> AsyncIterator[Tracker]:
    recorder = Tracker(db, secret=SECRET, triggers=TriggerAgent(db, _no_journeys),
                       features=None, clock=clock)  # fmt: skip
    recorder.start()
    yield recorder
    await recorder.stop()


def click(email: Email, link: int, at: datetime, who: tuple[str, str]) -> RawHit:
    token = sign_click(SECRET, "demo", 1, email.send_id, link)
    return RawHit(TrackingKind.CLICK, token, "GET", who[0], who[1], at)


async def _hits(db: Database, email: Email) -> list[tuple[int | None, bool, str | None]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(col(TrackingHit.link_index), col(TrackingHit.human), col(TrackingHit.rule))
            .where(col(TrackingHit.send_id) == email.send_id)
            .order_by(col(TrackingHit.id))
        )
        return [(i, bool(h), r) for i, h, r in rows.all()]


async def _clicked(db: Database, email: Email) -> bool:
    async with db.read() as conn:
        return bool(await engaged(conn, send_ids=[email.send_id], metrics=["click"]))


BURST = [(None, False, "scanner-clicks-every-link")] * 3


async def test_a_scanner_burst_in_one_go_counts_no_click(
    db: Database, tracker: Tracker, email: Email, clock: Clock
) -> None:
    for link in range(3):
        tracker.offer(click(email, link, clock.now + timedelta(seconds=link), SAFE_LINKS))
    await tracker.drain(now=True)
    assert [(None, h, r) for _, h, r in await _hits(db, email)] == BURST
    assert not await _clicked(db, email)


async def test_the_first_click_of_a_burst_is_held_then_reflagged(
    db: Database, tracker: Tracker, email: Email, clock: Clock
) -> None:
    """The scanner's first click is stored as a person's and held; the rest of the burst
    arrives later (another batch) and turns it into a machine's before it could count."""
    tracker.offer(click(email, 0, clock.now, SAFE_LINKS))
    await tracker.stored()
    assert await _hits(db, email) == [(0, True, None)]
    assert not await _clicked(db, email), "held for the burst window, not counted yet"

    tracker.offer(click(email, 1, clock.now + timedelta(seconds=1.2), SAFE_LINKS))
    tracker.offer(click(email, 2, clock.now + timedelta(seconds=2.5), SAFE_LINKS))
    clock.now += timedelta(seconds=BURST_SECONDS + 1)
    await tracker.drain()  # the window is over by the clock: decided without `now`
    assert [(None, h, r) for _, h, r in await _hits(db, email)] == BURST
    assert not await _clicked(db, email)


async def test_a_lone_click_counts_once_its_window_has_passed(
    db: Database, tracker: Tracker, email: Email, clock: Clock
) -> None:
    tracker.offer(click(email, 1, clock.now, IPHONE))
    await tracker.stored()
    assert not await _clicked(db, email)
    clock.now += timedelta(seconds=BURST_SECONDS + 1)
    await tracker.drain()
    assert await _hits(db, email) == [(1, True, None)]
    assert await _clicked(db, email)


@pytest.mark.parametrize(
    "gaps",
    [
        [0, 40],  # a second link, unhurried
        [0, 2],  # two of three links in tabs within seconds: not every link
        [0, 2, 9],  # all three, but not within one window
    ],
)
async def test_a_person_clicking_some_links_or_slowly_counts(
    db: Database, tracker: Tracker, email: Email, clock: Clock, gaps: list[int]
) -> None:
    for link, gap in enumerate(gaps):
        tracker.offer(click(email, link, clock.now + timedelta(seconds=gap), IPHONE))
    await tracker.drain(now=True)
    assert [human for _, human, _ in await _hits(db, email)] == [True] * len(gaps)
    assert await _clicked(db, email)
