"""The daily features job's first pass, a page of contacts at a time: derive each person's
features (engagement, purchase frequency, best hour, ...) from their events and sends.
The second pass emits the day's lapse and milestone events (``tailor/journeys/milestones.py``)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from tailor.db import Database
from tailor.models import utcnow
from tailor.payloads import FeaturesPage, FeaturesPageResult
from tailor.profiles.cache import FeatureCache
from tailor.profiles.derived import PURCHASE_WINDOW, WINDOW, History, derive
from tailor.send_time import local_hours, zone
from tailor.store.consent import lapse_implied_consent, newest_rows
from tailor.store.history import PastEvent, events_since, sent_times
from tailor.store.profiles import contacts_page, update_derived

HISTORY_EVENTS = ("email.opened", "email.clicked", "order.completed", "product.viewed",
                  "product.added")  # fmt: skip


class DailyFeatures:
    def __init__(self, db: Database, cache: FeatureCache | None = None) -> None:
        self._db = db
        self._cache = cache

    async def derive_page(self, page: FeaturesPage) -> FeaturesPageResult:
        now = utcnow()
        async with self._db.read() as conn:
            contacts = await contacts_page(
                conn, after_contact_id=page.after_contact_id, size=page.size
            )
            if not contacts:
                return FeaturesPageResult(None, 0)
            ids = [c.id or 0 for c in contacts]
            histories: dict[int, History] = defaultdict(History)
            for event in await events_since(conn, contact_ids=ids, since=now - PURCHASE_WINDOW):
                _add_event(histories[event.contact_id], event, now)
            for sent in await sent_times(conn, contact_ids=ids, since=now - WINDOW):
                histories[sent.contact_id].sends.append(sent.dispatched_at)
            newest = await newest_rows(conn, contact_ids=ids)
        lapsing = [c for c, row in newest.items() if row.lapsed(now)]
        # The send-time prior: open hours of this page's people in the same timezone.
        peers: dict[str, list[int]] = defaultdict(list)
        for contact in contacts:
            if contact.id in histories:
                opens = histories[contact.id].opens
                peers[contact.timezone] += local_hours(opens, zone(contact.timezone))
        updates = []
        for contact in contacts:
            found = histories.get(contact.id or 0)
            if found is None or found.empty:
                continue  # no events: keep what was imported
            engaged = [t for t in (contact.last_open_at, contact.last_click_at) if t is not None]
            found.last_engaged = max(engaged, default=None)
            derived = derive(found, now, contact.timezone, peers[contact.timezone],
                             contact.preferred_categories, contact.device)  # fmt: skip
            updates.append({"b_id": contact.id, **derived.__dict__, "updated_at": now})
        if lapsing or updates:
            async with self._db.write() as conn:
                # Implied consent that lapsed (CASL) is recorded in the ledger (checked again
                # under the write: a grant may have come since the read).
                await lapse_implied_consent(conn, contact_ids=lapsing, now=now)
                if updates:
                    await update_derived(conn, updates=updates)
        if updates and self._cache is not None:  # after the commit: sends must not see the old
            await self._cache.invalidate([u["b_id"] for u in updates])
        return FeaturesPageResult(contacts[-1].id, len(updates))


def _add_event(history: History, event: PastEvent, now: datetime) -> None:
    at = event.occurred_at
    if at >= now - WINDOW:  # usual device and latest timezone, from any event
        if event.device:
            history.devices.append(event.device)
        if event.timezone:
            history.timezones.append((at, event.timezone))
    if event.name not in HISTORY_EVENTS:
        return
    if event.name == "order.completed":
        history.orders.append(at)
    elif at < now - WINDOW:
        return
    elif event.name == "email.opened":
        history.opens.append(at)
    elif event.name == "email.clicked":
        history.clicks.append(at)
    history.categories += _categories(event.properties)


def _categories(properties: dict[str, Any]) -> list[str]:
    found = [properties.get("category")]
    found += [p.get("category") for p in properties.get("products") or [] if isinstance(p, dict)]
    return [c for c in found if isinstance(c, str) and c]
