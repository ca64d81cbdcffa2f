"""When a journey email goes: the person's best local hour, and the daily email limit.

The best hour is the one the daily job learned; without it, one from their own opens with a
prior from the learned hours of people in their timezone (cached hourly, as those change
daily). The limit counts marketing emails delivered since the person's local midnight.
"""

from __future__ import annotations

import time
from datetime import timedelta

from tailor.db import Database
from tailor.models import utcnow
from tailor.payloads import SendTimePlan
from tailor.send_time import (
    BestHour,
    best_hour,
    delay_until_hour,
    local_hours,
    until_next_local_day,
    zone,
)
from tailor.store.history import open_times
from tailor.store.profiles import best_hour_counts, read_contact
from tailor.store.sends import delivered_today
from tailor.store.tenants import daily_email_limit

OPEN_HISTORY = timedelta(days=90)
PRIOR_TTL_S = 3600.0
PEER_SAMPLE = 200  # learned hours of people in the timezone, in proportion


class JourneyTiming:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._priors: dict[tuple[str, str], tuple[float, list[int]]] = {}

    async def best_hour(self, tenant_id: str, contact_id: int) -> SendTimePlan:
        """The person's best local hour and how long until it comes round."""
        now = utcnow()
        async with self._db.read() as conn:
            contact = await read_contact(conn, contact_id=contact_id)
            tz = zone(contact.timezone)
            if contact.best_send_hour is not None:
                chosen = BestHour(contact.best_send_hour, "learned daily from when they open email")
            else:
                own = await open_times(conn, contact_id=contact_id, since=now - OPEN_HISTORY)
                peers = await self._peer_hours(tenant_id, contact.timezone)
                chosen = best_hour(local_hours(own, tz), peers)
        delay = delay_until_hour(now, tz, chosen.hour)
        return SendTimePlan(int(delay.total_seconds()), chosen.hour, chosen.reason)

    async def _peer_hours(self, tenant_id: str, timezone: str) -> list[int]:
        key = (tenant_id, timezone)
        cached = self._priors.get(key)
        if cached is not None and time.monotonic() - cached[0] < PRIOR_TTL_S:
            return cached[1]
        async with self._db.read() as conn:
            counts = await best_hour_counts(conn, tenant_id=tenant_id, timezone=timezone)
        total = sum(counts.values())
        hours = (
            [h for h, n in counts.items() for _ in range(round(PEER_SAMPLE * n / total))]
            if total
            else []
        )
        self._priors[key] = (time.monotonic(), hours)
        return hours

    async def over_daily_limit(self, tenant_id: str, contact_id: int) -> timedelta | None:
        """None if the person may get another marketing email today (their local day); else
        how long until their next day starts. The limit is read now, not from a cached
        campaign: a tenant may raise it for waiting sends."""
        async with self._db.read() as conn:
            contact = await read_contact(conn, contact_id=contact_id)
            limit = await daily_email_limit(conn, tenant_id=tenant_id)
            tz = zone(contact.timezone)
            local_now = utcnow().astimezone(tz)
            midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
            sent = await delivered_today(conn, contact_id=contact.id or 0, since=midnight)
        if sent < (limit or 1):
            return None
        return until_next_local_day(local_now, tz)
