"""The day's lapse and milestone events, the daily features job's second pass: for a page of
consenting contacts of tenants with rules for them, a lapse (no open in 30 days), a birthday or
a signup anniversary becomes an event, processed by the trigger agent like any other. Each has
a deterministic message id, so a rerun of the job emits nothing twice."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime

from tailor.db import Database
from tailor.journeys.triggers import TriggerAgent
from tailor.models import ConsentStatus, Contact, utcnow
from tailor.payloads import FeaturesPage, FeaturesPageResult
from tailor.profiles.derived import LAPSED_AFTER
from tailor.send_time import zone
from tailor.store.consent import current_consent
from tailor.store.events import StoredEvent, record_system_event
from tailor.store.journeys import tenants_with_rules
from tailor.store.profiles import contacts_page

DAILY_EVENTS = ("engagement.lapsed", "milestone.birthday", "milestone.anniversary")


class Milestones:
    def __init__(self, db: Database, triggers: TriggerAgent) -> None:
        self._db = db
        self._triggers = triggers

    async def emit(
        self, page: FeaturesPage, heartbeat: Callable[[int], None]
    ) -> FeaturesPageResult:
        """Lapse (no open in 30 days), birthday and signup anniversary events for a page of
        consenting contacts of tenants with rules for them; processed like any event."""
        now = utcnow()
        async with self._db.read() as conn:
            tenants = await tenants_with_rules(conn, events=DAILY_EVENTS)
            rows = await contacts_page(conn, after_contact_id=page.after_contact_id,
                                       size=page.size)  # fmt: skip
            if not rows:
                return FeaturesPageResult(None, 0)
            consent = await current_consent(conn, contact_ids=(c.id or 0 for c in rows))
        candidates = [
            c for c in rows
            if c.tenant_id in tenants and consent.get(c.id or 0) == ConsentStatus.GRANTED
        ]  # fmt: skip
        emitted: dict[str, list[StoredEvent]] = defaultdict(list)
        async with self._db.session() as session:
            for contact in candidates:
                for name, key in _due(contact, now):
                    stored = await record_system_event(
                        session=session, tenant_id=contact.tenant_id, contact_id=contact.id or 0,
                        name=name, message_id=f"tailor:{name}:{contact.id}:{key}", occurred_at=now,
                    )  # fmt: skip
                    if stored is not None:
                        emitted[contact.tenant_id].append(stored)
        for tenant_id, events in emitted.items():
            await self._triggers.on_events(tenant_id, events)
            heartbeat(len(events))
        return FeaturesPageResult(rows[-1].id, sum(map(len, emitted.values())))


def _due(contact: Contact, now: datetime) -> Iterable[tuple[str, str]]:
    """(event, once-only key) for what is due for this person today, in their local date."""
    today = now.astimezone(zone(contact.timezone)).date()
    last_seen = contact.last_open_at or contact.created_at
    if now - last_seen > LAPSED_AFTER:
        yield "engagement.lapsed", last_seen.date().isoformat()  # once per lapse
    if contact.birthday == today.strftime("%m-%d"):
        yield "milestone.birthday", str(today.year)
    joined = contact.created_at.astimezone(zone(contact.timezone)).date()
    if joined.year < today.year and joined.strftime("%m-%d") == today.strftime("%m-%d"):
        yield "milestone.anniversary", str(today.year)
