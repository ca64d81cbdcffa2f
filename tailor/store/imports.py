"""Bulk contact imports: many contacts in one statement, with a consent row for each that
granted it, skipping addresses the tenant already has."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from tailor.consent.ledger import LedgerEntry
from tailor.models import Contact
from tailor.store.consent import append_to_ledger
from tailor.store.erasure import suppress_erased


async def import_contacts(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    rows: Sequence[Mapping[str, object]],
    granted: set[str],
    consent: LedgerEntry,
) -> int:
    """Insert the contacts whose email is new to the tenant; those in ``granted`` get a consent
    row as ``consent`` says (status, source, method, ...; its contact id is replaced by each
    one's). Returns how many were inserted."""
    emails = [str(row["email"]) for row in rows]
    existing = set(
        (
            await conn.execute(
                select(Contact.email).where(  # type: ignore[call-overload]
                    col(Contact.tenant_id) == tenant_id, col(Contact.email).in_(emails)
                )
            )
        ).scalars()
    )
    fresh = [row for row in rows if row["email"] not in existing]
    if not fresh:
        return 0
    await conn.execute(insert(Contact), fresh)
    ids: dict[str, int] = dict(
        (
            await conn.execute(
                select(Contact.email, Contact.id).where(  # type: ignore[call-overload]
                    col(Contact.tenant_id) == tenant_id,
                    col(Contact.email).in_([r["email"] for r in fresh]),
                )
            )
        ).all()
    )
    await append_to_ledger(
        conn,
        [
            replace(consent, tenant_id=tenant_id, contact_id=ids[str(row["email"])])
            for row in fresh
            if str(row["email"]) in granted
        ],
        new_contacts=True,
    )
    await suppress_erased(
        conn, tenant_id=tenant_id, contacts=[(ids[str(r["email"])], str(r["email"])) for r in fresh]
    )
    return len(fresh)
