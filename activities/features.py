"""The daily features job's activities: derive features for a page of contacts, and emit the
day's lapse and milestone events (which the trigger agent turns into journeys)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col
from temporalio import activity

from tailor.db import Database
from tailor.journeys.triggers import TriggerAgent
from tailor.models import ConsentStatus, Contact, Event, Send, TriggerRule, utcnow
from tailor.payloads import FeaturesPage, FeaturesPageResult
from tailor.profiles.cache import FeatureCache
from tailor.profiles.derived import LAPSED_AFTER, PURCHASE_WINDOW, WINDOW, History, derive
from tailor.send_time import local_hours, zone
from tailor.store.consent import current_consent
from tailor.store.events import StoredEvent, record_system_event

HISTORY_EVENTS = ("email.opened", "email.clicked", "order.completed", "product.viewed",
                  "product.added")  # fmt: skip
DAILY_EVENTS = ("engagement.lapsed", "milestone.birthday", "milestone.anniversary")


def _categories(properties: dict[str, Any]) -> list[str]:
    found = [properties.get("category")]
    found += [p.get("category") for p in properties.get("products") or [] if isinstance(p, dict)]
    return [c for c in found if isinstance(c, str) and c]


class FeatureActivities:
    def __init__(
        self, db: Database, triggers: TriggerAgent, cache: FeatureCache | None = None
    ) -> None:
        self._db = db
        self._triggers = triggers
        self._cache = cache

    @activity.defn
    async def derive_page(self, page: FeaturesPage) -> FeaturesPageResult:
        now = utcnow()
        async with self._db.read() as conn:
            contacts = await _contacts(conn, page)
            if not contacts:
                return FeaturesPageResult(None, 0)
            ids = [c.id for c in contacts]
            histories: dict[int, History] = defaultdict(History)
            events = await conn.execute(
                select(Event.contact_id, Event.type, Event.occurred_at, Event.properties,  # type: ignore[call-overload]
                       Event.device, Event.timezone)
                .where(col(Event.contact_id).in_(ids),
                       col(Event.occurred_at) >= now - PURCHASE_WINDOW)
            )  # fmt: skip
            for contact_id, name, at, properties, device, timezone in events:
                history = histories[contact_id]
                if at >= now - WINDOW:  # usual device and latest timezone, from any event
                    if device:
                        history.devices.append(device)
                    if timezone:
                        history.timezones.append((at, timezone))
                if name not in HISTORY_EVENTS:
                    continue
                if name == "order.completed":
                    history.orders.append(at)
                elif at < now - WINDOW:
                    continue
                elif name == "email.opened":
                    history.opens.append(at)
                elif name == "email.clicked":
                    history.clicks.append(at)
                history.categories += _categories(properties or {})
            sends = await conn.execute(
                select(Send.contact_id, Send.dispatched_at).where(  # type: ignore[call-overload]
                    col(Send.contact_id).in_(ids), col(Send.dispatched_at) >= now - WINDOW
                )
            )
            for contact_id, at in sends:
                histories[contact_id].sends.append(at)
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
        if updates:
            async with self._db.write() as conn:
                await conn.execute(
                    update(Contact).where(col(Contact.id) == bindparam("b_id")),
                    updates,
                )
            if self._cache is not None:  # after the commit: sends must not see the old ones
                await self._cache.invalidate([u["b_id"] for u in updates])
        return FeaturesPageResult(contacts[-1].id, len(updates))

    @activity.defn
    async def emit_daily_events(self, page: FeaturesPage) -> FeaturesPageResult:
        """Lapse (no open in 30 days), birthday and signup anniversary events for a page of
        consenting contacts of tenants with rules for them; processed like any event."""
        now = utcnow()
        async with self._db.read() as conn:
            tenants = set(
                (
                    await conn.execute(
                        select(TriggerRule.tenant_id).where(  # type: ignore[call-overload]
                            col(TriggerRule.event).in_(DAILY_EVENTS), col(TriggerRule.enabled)
                        )
                    )
                ).scalars()
            )
            rows = await _contacts(conn, page)
            if not rows:
                return FeaturesPageResult(None, 0)
            consent = await current_consent(conn, (c.id or 0 for c in rows))
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
            activity.heartbeat(len(events))
        return FeaturesPageResult(rows[-1].id, sum(map(len, emitted.values())))


async def _contacts(conn: AsyncConnection, page: FeaturesPage) -> list[Contact]:
    """A keyset page of contacts, all tenants, by id."""
    rows = await conn.execute(
        select(Contact)
        .where(col(Contact.id) > page.after_contact_id)
        .order_by(col(Contact.id))
        .limit(page.size)
    )
    return [Contact.model_validate(dict(r._mapping)) for r in rows]


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
