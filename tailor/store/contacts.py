from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from tailor.errors import NotFound
from tailor.models import ConsentRecord, ConsentStatus, Contact, utcnow
from tailor.store.erasure import suppress_erased
from tailor.store.keyset import below

# Columns a caller may set on a contact; id, tenant and timestamps are the store's.
PROFILE_FIELDS = (
    "external_id",
    "first_name",
    "last_name",
    "timezone",
    "locale",
    "device",
    "engagement_score",
    "last_open_at",
    "purchase_frequency",
    "preferred_categories",
    "cart_items",
    "browse_items",
)


@dataclass(frozen=True)
class UpsertedContact:
    id: int
    created: bool  # False: an existing contact was updated


async def upsert_contacts(
    *,
    session: AsyncSession,
    tenant_id: str,
    contacts: Sequence[dict[str, Any]],
    suppress_erased_now: bool = True,
) -> list[UpsertedContact]:
    """Insert or update contacts by (tenant, email); returns them in input order. An erased
    person's address given again is suppressed in the ledger at once, unless
    ``suppress_erased_now`` is False: a caller that appends consent rows for them does it after
    those (``suppress_erased``), so that the suppression is their newest row.

    A dict names only the fields to set: on an existing contact the others keep their stored
    values; a new contact gets the table's defaults for them. Runs inside the caller's
    transaction, so a failure leaves nothing half-written.
    """
    emails = [c["email"].lower() for c in contacts]
    existing: dict[str, Contact] = {}
    for start in range(0, len(emails), 1000):
        batch = emails[start : start + 1000]
        rows = await session.execute(
            select(Contact).where(
                col(Contact.tenant_id) == tenant_id, col(Contact.email).in_(batch)
            )
        )
        for row in rows.scalars():
            existing[row.email] = row
    now = utcnow()
    out: list[Contact] = []
    created: list[bool] = []
    for email, data in zip(emails, contacts, strict=True):
        fields = {k: data[k] for k in PROFILE_FIELDS if k in data}
        found = existing.get(email)
        if found is None:
            found = Contact(tenant_id=tenant_id, email=email, **fields)
            session.add(found)
            existing[email] = found
            created.append(True)
        else:
            for key, value in fields.items():
                setattr(found, key, value)
            found.updated_at = now
            created.append(False)
        out.append(found)
    await session.flush()
    if suppress_erased_now:
        await suppress_erased(
            await session.connection(), tenant_id=tenant_id,
            contacts=[(row.id or 0, row.email) for row in out],
        )  # fmt: skip
    return [UpsertedContact(row.id or 0, new) for row, new in zip(out, created, strict=True)]


async def get_contact(*, session: AsyncSession, tenant_id: str, contact_id: int) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None or contact.tenant_id != tenant_id:
        raise NotFound("contact", contact_id)
    return contact


async def find_contact(*, session: AsyncSession, contact_id: int) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound("contact", contact_id)
    return contact


class ConsentState(StrEnum):
    """A contact's consent now: the status of their newest ledger row, or none without one."""

    GRANTED = ConsentStatus.GRANTED.value
    REVOKED = ConsentStatus.REVOKED.value
    SUPPRESSED = ConsentStatus.SUPPRESSED.value
    NONE = "none"


@dataclass(frozen=True)
class ContactSummary:
    """A contact as a list shows it: who, and whether we may write to them; not the profile."""

    id: int
    email: str
    first_name: str | None
    last_name: str | None
    consent: ConsentState
    created_at: datetime


async def list_contacts(
    *,
    session: AsyncSession,
    tenant_id: str,
    after: int | None,
    limit: int,
    email: str | None = None,
    consent: ConsentState | None = None,
) -> list[ContactSummary]:
    """A keyset page of the tenant's contacts, newest first (``tailor.store.keyset``).
    ``email`` matches whole addresses, whatever their case; ``consent`` the current state."""
    # The newest ledger row decides, as in ``tailor.store.consent.current_consent``; the
    # (contact_id, id) index makes this one index probe per contact.
    current = (
        select(ConsentRecord.status)
        .where(col(ConsentRecord.contact_id) == col(Contact.id))
        .order_by(col(ConsentRecord.id).desc())
        .limit(1)
        .correlate(Contact)
        .scalar_subquery()
    )
    where = [col(Contact.tenant_id) == tenant_id, below(col(Contact.id), after)]
    if email is not None:
        where.append(func.lower(col(Contact.email)) == email.strip().lower())
    if consent == ConsentState.NONE:
        where.append(current.is_(None))
    elif consent is not None:
        where.append(current == consent.value)
    rows = await session.execute(
        select(  # type: ignore[call-overload]
            Contact.id, Contact.email, Contact.first_name, Contact.last_name, current,
            Contact.created_at,
        )
        .where(*where)
        .order_by(col(Contact.id).desc())
        .limit(limit)
    )  # fmt: skip
    return [
        ContactSummary(ident, address, first, last, ConsentState(state or "none"), created)
        for ident, address, first, last, state, created in rows.all()
    ]
