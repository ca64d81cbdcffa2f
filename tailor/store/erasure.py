"""A person's data, gathered for export (GDPR Art. 15/20) and removed for erasure (Art. 17).

What Tailor holds about a contact, and what erasure does to it:

- ``contact``: the row stays (the consent ledger and sends point at it, and the ledger is
  append-only); every field that says who they are or what they like is blanked, the address
  replaced by ``erased-<id>@erased.invalid``, and ``erased_at`` set.
- ``event``: kept as facts without identity (type and times, which reports and conversions
  count), with properties, user and anonymous ids, device and time zone removed; events stored
  under the person's user id or anonymous ids before they were linked to the contact go the
  same way.
- ``send``: "why this email" and the links in it (their cart's products) removed; ``esp_event``:
  the provider's reason text (it can quote the address), and any unmatched event that names it;
  ``dead_letter``: the error text of their events.
- ``idempotent_request``: stored responses that name the address (a contacts upsert answers
  with it) deleted.
- Kept as they are, since they say nothing about who the person was: the consent ledger (ids
  and the evidence of each change), engagement and conversions (times and amounts), journey
  runs, tracking hits (no IP or user agent is stored), the audit log (ids).

The address itself survives only as ``erased_address``: a SHA-256 of the tenant's salt and the
address, so that the address imported again is suppressed.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from tailor.consent.ledger import LedgerEntry
from tailor.models import (
    ConsentRecord,
    ConsentStatus,
    Contact,
    Conversion,
    DeadLetter,
    Engagement,
    ErasedAddress,
    Erasure,
    ErasureSalt,
    ErasureStatus,
    EspEvent,
    Event,
    IdempotentRequest,
    JourneyRun,
    Send,
    TrackingHit,
    utcnow,
)
from tailor.store.consent import append_to_ledger, current_consent

ERASED_DOMAIN = "erased.invalid"  # RFC 2606: never deliverable


def erased_address(contact_id: int) -> str:
    return f"erased-{contact_id}@{ERASED_DOMAIN}"


def _hash(salt: str, email: str) -> str:
    return hashlib.sha256(f"{salt}:{email.strip().lower()}".encode()).hexdigest()


async def _salt(conn: AsyncConnection, tenant_id: str, *, create: bool) -> str | None:
    salt = await conn.scalar(
        select(col(ErasureSalt.salt)).where(col(ErasureSalt.tenant_id) == tenant_id)
    )
    if salt is None and create:
        salt = secrets.token_hex(16)
        await conn.execute(insert(ErasureSalt).values(tenant_id=tenant_id, salt=salt))
    return salt


async def erased_among(conn: AsyncConnection, *, tenant_id: str, emails: Iterable[str]) -> set[str]:
    """The addresses (lower-cased) among ``emails`` that belong to someone erased."""
    salt = await _salt(conn, tenant_id, create=False)
    if salt is None:
        return set()
    by_hash = {_hash(salt, e): e.strip().lower() for e in emails}
    found: set[str] = set()
    hashes = list(by_hash)
    for start in range(0, len(hashes), 1000):
        rows = await conn.execute(
            select(ErasedAddress.address_hash).where(  # type: ignore[call-overload]
                col(ErasedAddress.tenant_id) == tenant_id,
                col(ErasedAddress.address_hash).in_(hashes[start : start + 1000]),
            )
        )
        found |= {by_hash[h] for h in rows.scalars()}
    return found


async def suppress_erased(
    conn: AsyncConnection, *, tenant_id: str, contacts: Sequence[tuple[int, str]]
) -> list[int]:
    """Of ``contacts`` (id, address), those whose address was erased get a ``suppressed``
    ledger row unless their newest row already is one: an erased person imported again is not
    mailed. Returns their ids. Only a later, deliberate consent change lifts it."""
    erased = await erased_among(conn, tenant_id=tenant_id, emails=(e for _, e in contacts))
    ids = [cid for cid, email in contacts if email.strip().lower() in erased]
    if not ids:
        return []
    newest = await current_consent(conn, contact_ids=ids)
    due = [cid for cid in ids if newest.get(cid) != ConsentStatus.SUPPRESSED.value]
    now = utcnow()
    await append_to_ledger(
        conn,
        [
            LedgerEntry(
                tenant_id=tenant_id,
                contact_id=cid,
                status=ConsentStatus.SUPPRESSED.value,
                source="erased-address",
                method="erasure",
                wording_version="-",
                recorded_by="system:erasure",
                recorded_at=now,
            )  # fmt: skip
            for cid in due
        ],
    )
    return ids


async def find_erasure(conn: AsyncConnection, *, tenant_id: str, contact_id: int) -> Erasure | None:
    row = (
        await conn.execute(
            select(Erasure).where(
                col(Erasure.tenant_id) == tenant_id, col(Erasure.contact_id) == contact_id
            )
        )
    ).first()
    return Erasure.model_validate(row._mapping) if row is not None else None


async def request_erasure(
    conn: AsyncConnection, *, tenant_id: str, contact_id: int, requested_by: str
) -> tuple[Erasure, bool]:
    """The contact's erasure, recorded now if it was not already; (erasure, new)."""
    found = await find_erasure(conn, tenant_id=tenant_id, contact_id=contact_id)
    if found is not None:
        return found, False
    erasure = Erasure(
        id=f"era_{secrets.token_hex(8)}", tenant_id=tenant_id, contact_id=contact_id,
        requested_by=requested_by, requested_at=utcnow(),
    )  # fmt: skip
    if conn.dialect.name != "postgresql":  # SQLite: this write transaction is the only one
        await conn.execute(insert(Erasure).values(**erasure.model_dump()))
        return erasure, True
    try:  # two DELETEs at once: the second finds the first's erasure
        async with conn.begin_nested():
            await conn.execute(insert(Erasure).values(**erasure.model_dump()))
    except IntegrityError:
        found = await find_erasure(conn, tenant_id=tenant_id, contact_id=contact_id)
        if found is None:
            raise
        return found, False
    return erasure, True


async def erase_records(
    conn: AsyncConnection, *, tenant_id: str, contact_id: int
) -> dict[str, int]:
    """Blank or remove what identifies the contact (the module's docstring), in the caller's
    transaction; returns the rows changed by table. Running it again changes nothing more."""
    contact = (
        await conn.execute(
            select(Contact.email, Contact.external_id, Contact.erased_at).where(  # type: ignore[call-overload]
                col(Contact.tenant_id) == tenant_id, col(Contact.id) == contact_id
            )
        )
    ).first()
    if contact is None:
        return {}
    email, external_id, erased_at = contact
    counts: dict[str, int] = {}
    if erased_at is None:
        salt = await _salt(conn, tenant_id, create=True)
        assert salt is not None
        digest = _hash(salt, email)
        held = await conn.scalar(
            select(col(ErasedAddress.address_hash)).where(
                col(ErasedAddress.tenant_id) == tenant_id,
                col(ErasedAddress.address_hash) == digest,
            )
        )
        if held is None:  # someone with this address may have been erased before
            await conn.execute(
                insert(ErasedAddress).values(
                    tenant_id=tenant_id, address_hash=digest, erased_at=utcnow()
                )
            )
        counts["erased_address"] = 1
    sends = select(col(Send.id)).where(col(Send.contact_id) == contact_id).scalar_subquery()
    events = [col(Event.contact_id) == contact_id]
    if external_id:  # stored under their user id before it was linked to the contact
        events.append((col(Event.tenant_id) == tenant_id) & (col(Event.user_id) == external_id))
    anonymous = list(
        (
            await conn.execute(
                select(col(Event.anonymous_id))
                .distinct()
                .where(col(Event.contact_id) == contact_id, col(Event.anonymous_id).is_not(None))
            )
        ).scalars()
    )
    if anonymous:  # and under the anonymous ids they were seen with, before they signed in
        events.append((col(Event.tenant_id) == tenant_id) & col(Event.anonymous_id).in_(anonymous))
    event_ids = select(col(Event.id)).where(or_(*events)).scalar_subquery()
    counts["dead_letter"] = _changed(
        await conn.execute(
            update(DeadLetter)
            .where(col(DeadLetter.event_id).in_(event_ids), col(DeadLetter.error) != "[erased]")
            .values(error="[erased]")
        )
    )
    counts["event"] = _changed(
        await conn.execute(
            update(Event)
            .where(or_(*events))
            .values(properties={}, user_id=None, anonymous_id=None, device=None, timezone=None)
        )
    )
    counts["send"] = _changed(
        await conn.execute(
            update(Send)
            .where(col(Send.contact_id) == contact_id)
            .values(explain=None, links=None, error=None)
        )
    )
    pattern = f"%{email.strip().lower()}%"
    counts["esp_event"] = _changed(
        await conn.execute(
            update(EspEvent)
            .where(
                or_(
                    col(EspEvent.send_id).in_(sends),
                    # An event matched to no send names no tenant: it may still quote them.
                    or_(col(EspEvent.tenant_id) == tenant_id, col(EspEvent.tenant_id).is_(None))
                    & func.lower(col(EspEvent.reason)).like(pattern),
                ),
                col(EspEvent.reason).is_not(None),
            )
            .values(reason=None)
        )
    )
    counts["idempotent_request"] = _changed(
        await conn.execute(
            delete(IdempotentRequest).where(
                col(IdempotentRequest.tenant_id) == tenant_id,
                func.lower(cast(col(IdempotentRequest.response), String)).like(pattern),
            )
        )
    )
    counts["contact"] = _changed(
        await conn.execute(
            update(Contact)
            .where(col(Contact.id) == contact_id, col(Contact.erased_at).is_(None))
            .values(
                email=erased_address(contact_id),
                external_id=None,
                first_name=None,
                last_name=None,
                timezone="UTC",
                locale="en",
                device="desktop",
                engagement_score=50,
                soft_bounces=0,
                last_open_at=None,
                last_click_at=None,
                last_purchase_at=None,
                purchase_frequency=0.0,
                order_count=0,
                birthday=None,
                preferred_categories=[],
                cart_items=[],
                browse_items=[],
                avg_time_to_open_s=None,
                best_send_hour=None,
                erased_at=utcnow(),
                updated_at=utcnow(),
            )  # fmt: skip
        )
    )
    return counts


def _changed(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def finish_erasure(conn: AsyncConnection, *, erasure_id: str, counts: dict[str, int]) -> None:
    await conn.execute(
        update(Erasure)
        .where(col(Erasure.id) == erasure_id, col(Erasure.status) != ErasureStatus.DONE.value)
        .values(status=ErasureStatus.DONE.value, completed_at=utcnow(), counts=counts)
    )


async def contact_data(conn: AsyncConnection, *, tenant_id: str, contact_id: int) -> dict[str, Any]:
    """Everything held about the contact, table by table, as plain rows (an export)."""

    async def rows(query: Any) -> list[dict[str, Any]]:
        return [_plain(dict(r)) for r in (await conn.execute(query)).mappings()]

    profiles = await rows(
        select(Contact).where(col(Contact.tenant_id) == tenant_id, col(Contact.id) == contact_id)
    )
    sends = select(col(Send.id)).where(col(Send.contact_id) == contact_id).scalar_subquery()
    return {
        "contact": profiles[0] if profiles else None,
        "consent": await rows(
            select(ConsentRecord)
            .where(col(ConsentRecord.contact_id) == contact_id)
            .order_by(col(ConsentRecord.seq))
        ),
        "events": await rows(
            select(Event).where(col(Event.contact_id) == contact_id).order_by(col(Event.id))
        ),
        "emails": await rows(
            select(Send).where(col(Send.contact_id) == contact_id).order_by(col(Send.id))
        ),
        "opens_and_clicks": await rows(
            select(TrackingHit)
            .where(col(TrackingHit.send_id).in_(sends))
            .order_by(col(TrackingHit.id))
        ),  # fmt: skip
        "provider_events": await rows(
            select(EspEvent).where(col(EspEvent.send_id).in_(sends)).order_by(col(EspEvent.id))
        ),
        "engagement": await rows(
            select(Engagement).where(col(Engagement.contact_id) == contact_id)
        ),
        "conversions": await rows(
            select(Conversion).where(col(Conversion.contact_id) == contact_id)
        ),
        "journeys": await rows(
            select(JourneyRun)
            .where(col(JourneyRun.contact_id) == contact_id)
            .order_by(col(JourneyRun.id))
        ),
    }


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
