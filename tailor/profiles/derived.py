"""Derived features, computed daily from each person's events and sends.

Real-time features (last open, click and purchase, cart, device, timezone) are updated by each
event (``tailor.profiles.features``). These need a window of history: engagement score, purchase
frequency, average time to open, preferred categories and best send hour. People with no
events keep what was imported for them (through the contacts API).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tailor.send_time import best_hour, local_hours, zone

WINDOW = timedelta(days=90)
PURCHASE_WINDOW = timedelta(days=180)
OPEN_AFTER_SEND = timedelta(hours=72)  # an open later than this is not "this email's"
LAPSED_AFTER = timedelta(days=30)  # no open for this long: re-engagement


@dataclass
class History:
    """One person's events and sends in the window, as the daily job reads them."""

    opens: list[datetime] = field(default_factory=list)
    clicks: list[datetime] = field(default_factory=list)
    orders: list[datetime] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)  # of products viewed, added, bought
    sends: list[datetime] = field(default_factory=list)  # when our emails went out
    # The contact's own last open or click (imported, or from an event older than the window).
    last_engaged: datetime | None = None
    devices: list[str] = field(default_factory=list)  # from events' context
    timezones: list[tuple[datetime, str]] = field(default_factory=list)  # (when, zone)

    @property
    def empty(self) -> bool:
        return not (
            self.opens or self.clicks or self.orders or self.categories or self.devices
            or self.timezones
        )  # fmt: skip


@dataclass(frozen=True)
class Derived:
    engagement_score: int
    purchase_frequency: float
    avg_time_to_open_s: float | None
    preferred_categories: list[str]
    best_send_hour: int
    device: str  # the device they use most
    timezone: str  # the timezone they were last seen in


def engagement_score(history: History, now: datetime) -> int:
    """0-100: recency of the last open or click, and how often they open, click and buy."""
    seen = history.opens + history.clicks
    last = max(seen + [history.last_engaged] if history.last_engaged else seen, default=None)
    recency = math.exp(-(now - last).days / 30) if last is not None else 0.0
    opens = min(len(history.opens) / 10, 1.0)
    clicks = min(len(history.clicks) / 5, 1.0)
    orders = min(len([o for o in history.orders if now - o <= PURCHASE_WINDOW]) / 3, 1.0)
    return round(40 * recency + 25 * opens + 20 * clicks + 15 * orders)


def avg_time_to_open(history: History) -> float | None:
    """Mean seconds from an email going out to the person's first open after it."""
    opens = sorted(history.opens)
    delays = []
    for sent in history.sends:
        first = next((o for o in opens if sent <= o <= sent + OPEN_AFTER_SEND), None)
        if first is not None:
            delays.append((first - sent).total_seconds())
    return round(statistics.mean(delays), 1) if delays else None


def derive(
    history: History,
    now: datetime,
    timezone: str,
    peer_open_hours: Sequence[int],
    current_categories: Sequence[str],
    current_device: str,
) -> Derived:
    orders = [o for o in history.orders if now - o <= PURCHASE_WINDOW]
    ranked = [c for c, _ in Counter(history.categories).most_common(3)]
    devices = Counter(history.devices).most_common(1)
    timezone = max(history.timezones)[1] if history.timezones else timezone
    return Derived(
        engagement_score=engagement_score(history, now),
        purchase_frequency=round(len(orders) / (PURCHASE_WINDOW.days / 30), 2),
        avg_time_to_open_s=avg_time_to_open(history),
        preferred_categories=ranked or list(current_categories),
        best_send_hour=best_hour(
            local_hours(history.opens, zone(timezone)), list(peer_open_hours)
        ).hour,
        device=devices[0][0] if devices else current_device,
        timezone=timezone,
    )
