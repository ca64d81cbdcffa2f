"""Segment-style events: each stored once, resolved to a contact, its features applied.

A redelivery is a no-op. The message id (Segment's ``messageId``, or a hash of the event when
there is none) is unique per tenant and the insert is ``ON CONFLICT DO NOTHING``: the constraint
decides, so of two requests racing with one event, one stores it and the other counts a
duplicate, and neither fails. Features (``tailor.profiles.features``) are applied only by the
one that stored it, in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from tailor.models import Contact, Event, utcnow
from tailor.profiles.features import apply_event, device_of, timezone_of
from tailor.store.contacts import find_contact, upsert_contacts

EventKind = Literal["track", "identify"]

_SEPARATORS = re.compile(r"[\s_.-]+")


def normalise_event_name(name: str) -> str:
    """``Order Completed``, ``order_completed`` and ``Order-Completed`` are ``order.completed``."""
    return _SEPARATORS.sub(".", name.strip().lower()).strip(".")


@dataclass(frozen=True)
class IncomingEvent:
    """A validated track or identify call, as received."""

    kind: EventKind
    user_id: str | None
    anonymous_id: str | None
    properties: Mapping[str, Any]  # a track's properties, an identify's traits
    context: Mapping[str, Any]
    timestamp: datetime | None  # when it happened, as sent; None: when received
    message_id: str | None = None
    event: str | None = None  # a track's name, as sent

    @property
    def name(self) -> str:
        return normalise_event_name(self.event or "") if self.kind == "track" else "identify"

    @property
    def email(self) -> str | None:
        """An identify's email trait: the contact it is about."""
        email = self.properties.get("email") if self.kind == "identify" else None
        return email.strip().lower() if isinstance(email, str) and email.strip() else None


@dataclass(frozen=True)
class StoredEvent:
    """A newly stored event, as trigger processing gets it: ids and a name, no PII."""

    id: int
    tenant_id: str
    contact_id: int | None
    name: str
    message_id: str
    occurred_at: datetime
    revenue_cents: int | None = None  # an order's, for attribution


ORDER_COMPLETED = "order.completed"
REVENUE_PROPERTIES = ("revenue", "total", "value")  # Segment's ecommerce spec, in that order


def revenue_cents(properties: Mapping[str, Any]) -> int:
    """An order's revenue in cents: the first numeric of ``revenue``, ``total``, ``value``."""
    for name in REVENUE_PROPERTIES:
        value = properties.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            continue
        try:
            amount = float(value)
        except ValueError:
            continue
        if amount == amount and abs(amount) < 1e13:  # not NaN, and fits in cents
            return round(amount * 100)
    return 0


def message_id_for(event: IncomingEvent) -> str:
    """The event's own message id, else a hash of its content, so an identical redelivery of
    an event sent without one is still a duplicate."""
    if event.message_id:
        return event.message_id
    canonical = {
        "kind": event.kind,
        "name": event.name,
        "userId": event.user_id,
        "anonymousId": event.anonymous_id,
        "properties": event.properties,
        "context": event.context,
        "timestamp": event.timestamp.astimezone(UTC).isoformat() if event.timestamp else None,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"


@dataclass(frozen=True)
class RecordedEvents:
    stored: list[StoredEvent]  # the new ones, in input order
    duplicates: int  # within the call, or of events already stored


async def record_events(
    *, session: AsyncSession, tenant_id: str, events: Sequence[IncomingEvent]
) -> RecordedEvents:
    """Store the events not seen before and apply their features, in the caller's transaction,
    in input order."""
    now = utcnow()
    unique: dict[str, IncomingEvent] = {}
    for event in events:
        unique.setdefault(message_id_for(event), event)
    known = await _stored_message_ids(session, tenant_id, list(unique))
    fresh = {mid: event for mid, event in unique.items() if mid not in known}
    contacts = await _Contacts.load(session, tenant_id, fresh.values())
    stored: list[StoredEvent] = []
    for message_id, event in fresh.items():
        contact = await contacts.resolve(event)
        # A client clock ahead of ours must not pin "last opened" in the future.
        occurred_at = min(event.timestamp or now, now)
        event_id = await _insert(
            session,
            {
                "tenant_id": tenant_id,
                "contact_id": contact.id if contact else None,
                "kind": event.kind,
                "type": event.name,
                "user_id": event.user_id,
                "anonymous_id": event.anonymous_id,
                "properties": dict(event.properties),
                "device": device_of(event.context),
                "timezone": timezone_of(event.context),
                "message_id": message_id,
                "occurred_at": occurred_at,
                "received_at": now,
            },
        )
        if event_id is None:
            continue  # a concurrent request stored it first: its features are applied there
        if contact is not None:
            if event.kind == "identify" and event.user_id:
                await contacts.link(contact, event.user_id)
            changed = apply_event(
                contact,
                name=event.name,
                properties=event.properties,
                context=event.context,
                occurred_at=occurred_at,
            )
            if changed:
                contact.updated_at = now
        stored.append(
            StoredEvent(
                id=event_id,
                tenant_id=tenant_id,
                contact_id=contact.id if contact else None,
                name=event.name,
                message_id=message_id,
                occurred_at=occurred_at,
                revenue_cents=(
                    revenue_cents(event.properties) if event.name == ORDER_COMPLETED else None
                ),
            )
        )
    await session.flush()
    return RecordedEvents(stored, len(events) - len(stored))


async def _stored_message_ids(
    session: AsyncSession, tenant_id: str, message_ids: list[str]
) -> set[str]:
    """The common redelivery, found in one query; the insert still decides a race."""
    if not message_ids:
        return set()
    rows = await session.execute(
        select(Event.message_id).where(
            col(Event.tenant_id) == tenant_id, col(Event.message_id).in_(message_ids)
        )
    )
    return {mid for mid in rows.scalars() if mid is not None}


async def _insert(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """The new event's id, or None if the tenant already has its message id."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Event)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "message_id"])
        .returning(col(Event.id))
    )
    event_id: int | None = (await session.execute(statement)).scalar_one_or_none()
    return event_id


class _Contacts:
    """The contacts one call refers to, by user id (external id) and email, locked so that two
    requests updating one contact's features queue instead of losing an update."""

    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._by_user: dict[str, Contact] = {}
        self._by_email: dict[str, Contact] = {}

    @classmethod
    async def load(
        cls, session: AsyncSession, tenant_id: str, events: Iterable[IncomingEvent]
    ) -> _Contacts:
        contacts = cls(session, tenant_id)
        events = list(events)
        user_ids = {e.user_id for e in events if e.user_id}
        emails = {e.email for e in events if e.email}
        if not user_ids and not emails:
            return contacts
        rows = await session.execute(
            select(Contact)
            .where(
                col(Contact.tenant_id) == tenant_id,
                or_(col(Contact.external_id).in_(user_ids), col(Contact.email).in_(emails)),
            )
            .order_by(col(Contact.id))
            .with_for_update()
        )
        for contact in rows.scalars():
            contacts._by_email[contact.email] = contact
            if contact.external_id:
                contacts._by_user.setdefault(contact.external_id, contact)
        return contacts

    async def resolve(self, event: IncomingEvent) -> Contact | None:
        """An identify with an email is about that contact (created if new); anything else is
        about the contact whose external id is its user id, if there is one."""
        email = event.email
        if email is not None:
            return self._by_email.get(email) or await self._create(email)
        return self._by_user.get(event.user_id) if event.user_id else None

    async def link(self, contact: Contact, user_id: str) -> None:
        """Make ``user_id`` this contact's, and no other's: a user id is one person."""
        if contact.external_id != user_id:
            await self._session.execute(
                update(Contact)
                .where(
                    col(Contact.tenant_id) == self._tenant_id,
                    col(Contact.external_id) == user_id,
                    col(Contact.id) != contact.id,
                )
                .values(external_id=None)
            )
            contact.external_id = user_id
        self._by_user[user_id] = contact

    async def _create(self, email: str) -> Contact:
        session = self._session
        try:
            async with session.begin_nested():
                [created] = await upsert_contacts(
                    session=session, tenant_id=self._tenant_id, contacts=[{"email": email}]
                )
        except IntegrityError:
            # A concurrent request created it first (PostgreSQL waited for it): use that one.
            rows = await session.execute(
                select(Contact)
                .where(col(Contact.tenant_id) == self._tenant_id, col(Contact.email) == email)
                .with_for_update()
            )
            contact = rows.scalar_one()
        else:
            contact = await find_contact(session=session, contact_id=created.id)
        self._by_email[email] = contact
        return contact


async def record_system_event(
    *,
    session: AsyncSession,
    tenant_id: str,
    contact_id: int,
    name: str,
    message_id: str,
    occurred_at: datetime,
) -> StoredEvent | None:
    """An event Tailor itself observed (a lapse, a birthday), for a known person. The message
    id is deterministic, so a rerun of the job that found it records nothing new (None)."""
    event_id = await _insert(session, {
        "tenant_id": tenant_id, "contact_id": contact_id, "kind": "track", "type": name,
        "properties": {"source": "tailor"}, "message_id": message_id,
        "occurred_at": occurred_at, "received_at": occurred_at,
    })  # fmt: skip
    if event_id is None:
        return None
    return StoredEvent(event_id, tenant_id, contact_id, name, message_id, occurred_at)


# --- The API's writes --------------------------------------------------------------------------


async def apply_system_event_features(
    *, session: AsyncSession, contact_id: int, name: str, occurred_at: datetime
) -> bool:
    """Apply an event Tailor observed (e.g. an email opened) to its contact's features, as
    ``record_events`` does for received ones, in the caller's transaction; True if any changed."""
    contact = await session.get(Contact, contact_id)
    if contact is None or not apply_event(
        contact, name=name, properties={}, context={}, occurred_at=occurred_at
    ):
        return False
    contact.updated_at = utcnow()
    return True
