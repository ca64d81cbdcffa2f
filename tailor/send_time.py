"""Send-time optimisation: each person's best local hour to receive email.

Learned from the local hours at which they opened email, smoothed towards a prior: the hours
of people in the same timezone (their segment), else a mid-morning default. With thin history
the prior dominates; with a few dozen opens the person's own habit does.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_HOUR = 10
PRIOR_WEIGHT = 5.0  # the prior counts as this many opens
MIN_PEER_OPENS = 20  # fewer peer opens than this: the default prior instead


@dataclass(frozen=True)
class BestHour:
    hour: int
    reason: str


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_hours(opened_at: Iterable[datetime], tz: ZoneInfo) -> list[int]:
    return [t.astimezone(tz).hour for t in opened_at]


def best_hour(own: list[int], peers: list[int]) -> BestHour:
    """The hour with the most weight: own opens count one each, the prior adds PRIOR_WEIGHT
    spread over the peers' open hours (or all on DEFAULT_HOUR)."""
    weights: defaultdict[int, float] = defaultdict(float)
    if len(peers) >= MIN_PEER_OPENS:
        for hour, count in Counter(peers).items():
            weights[hour] += PRIOR_WEIGHT * count / len(peers)
        prior = "people in the same timezone"
    else:
        weights[DEFAULT_HOUR] += PRIOR_WEIGHT
        prior = f"default {DEFAULT_HOUR}:00"
    for hour in own:
        weights[hour] += 1
    # Ties go to the earlier hour, so the choice is stable.
    hour = max(sorted(weights), key=lambda h: weights[h])
    if not own:
        return BestHour(hour, f"no opens yet; prior from {prior}")
    return BestHour(
        hour, f"{own.count(hour)} of {len(own)} opens at {hour}:00 local; prior from {prior}"
    )


def delay_until_hour(now: datetime, tz: ZoneInfo, hour: int) -> timedelta:
    """Time until the next ``hour``:00 local; zero if we are inside that hour now."""
    local = now.astimezone(tz)
    if local.hour == hour:
        return timedelta(0)
    target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    # Subtract in UTC: aware datetimes sharing a tzinfo subtract by wall clock (wrong over DST).
    return target.astimezone(UTC) - now.astimezone(UTC)


def until_next_local_day(now: datetime, tz: ZoneInfo) -> timedelta:
    """Time until the next local midnight: never zero (unlike ``delay_until_hour(now, tz, 0)``,
    which inside the midnight hour answers "now", so a person mailed at 00:10 would be asked
    again at once, every second, until 01:00)."""
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return midnight.astimezone(UTC) - now.astimezone(UTC)


def fixed_local_hour(send_time: str) -> int | None:
    """The hour of a campaign's ``"HH:00"`` send time (each recipient's local HH:00); None for
    ``now`` and ``best_hour``."""
    if len(send_time) == 5 and send_time.endswith(":00") and send_time[:2].isdigit():
        hour = int(send_time[:2])
        return hour if hour < 24 else None
    return None
