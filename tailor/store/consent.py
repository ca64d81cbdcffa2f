"""The consent ledger: append-only. Current consent is the newest row per contact."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from tailor.models import ConsentRecord, ConsentStatus, Contact, Send, SendStatus, utcnow

# The advisory-lock namespace (PostgreSQL) that orders revocations and claims, tenant by tenant.
CONSENT_LOCK = 7_311_401
# A send claimed longer ago than this and never settled is not on its way: its worker died
# between claim and answer, and it stays ``dispatched`` for good (never resent).
ON_ITS_WAY_WITHIN = timedelta(hours=1)


@dataclass(frozen=True)
class ClaimedSend:
    """A send claimed for delivery before a revocation committed, and where it stood then."""

    send_id: int
    campaign_id: str
    status: str


async def record_consent(
    *,
    session: AsyncSession,
    tenant_id: str,
    contact_id: int,
    status: ConsentStatus,
    source: str,
    method: str,
    wording_version: str,
    recorded_by: str,
) -> ConsentRecord:
    record = ConsentRecord(
        tenant_id=tenant_id,
        contact_id=contact_id,
        status=status,
        source=source,
        method=method,
        wording_version=wording_version,
        recorded_by=recorded_by,
    )
    session.add(record)
    await session.flush()
    return record


async def revoke_consent(
    *,
    session: AsyncSession,
    tenant_id: str,
    contact_id: int,
    source: str,
    method: str,
    wording_version: str,
    recorded_by: str,
) -> tuple[ConsentRecord, list[ClaimedSend]]:
    """Append a revocation after which no send to the contact is claimed, and return it with
    the contact's sends claimed before it and not yet accepted by a provider (emails already on
    their way, which nothing can call back).

    Claims and this are ordered: on SQLite, by the write lock this transaction holds from its
    first statement (``BEGIN IMMEDIATE``) to its commit; on PostgreSQL, by the tenant's advisory
    lock, which this takes exclusively and every claim shared (``tailor.store.sends``), so a
    claim either committed before, and is read here, or runs after the commit and sees the
    revocation. The caller commits."""
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:space, hashtext(:tenant))"),
            {"space": CONSENT_LOCK, "tenant": tenant_id},
        )
    record = await record_consent(
        session=session, tenant_id=tenant_id, contact_id=contact_id,
        status=ConsentStatus.REVOKED, source=source, method=method,
        wording_version=wording_version, recorded_by=recorded_by,
    )  # fmt: skip
    claimed = await _claimed_sends(
        conn,
        col(Send.contact_id) == contact_id,
        col(Send.status) == SendStatus.DISPATCHED.value,
        col(Send.dispatched_at) >= utcnow() - ON_ITS_WAY_WITHIN,
    )
    return record, claimed


async def claimed_sends_now(conn: AsyncConnection, *, send_ids: list[int]) -> list[ClaimedSend]:
    """Where these sends stand now."""
    if not send_ids:
        return []
    return await _claimed_sends(conn, col(Send.id).in_(send_ids))


async def _claimed_sends(conn: AsyncConnection, *where: ColumnElement[bool]) -> list[ClaimedSend]:
    rows = await conn.execute(
        select(Send.id, Send.campaign_id, Send.status)  # type: ignore[call-overload]
        .where(*where)
        .order_by(col(Send.id))
    )
    return [ClaimedSend(int(i), str(c), str(s)) for i, c, s in rows.all()]


async def suppress_addresses(
    conn: AsyncConnection, *, tenant_id: str, contact_ids: Iterable[int], source: str
) -> None:
    """A provider refused these addresses for good (hard bounce, invalid): a ``suppressed``
    ledger row stops every later send to them, as a revocation does, and says why."""
    rows = [
        {
            "tenant_id": tenant_id,
            "contact_id": contact_id,
            "channel": "email",
            "status": ConsentStatus.SUPPRESSED.value,
            "source": source[:100],
            "method": "provider-refusal",
            "wording_version": "-",
            "recorded_by": "system:delivery",
            "recorded_at": utcnow(),
        }
        for contact_id in sorted(set(contact_ids))
    ]
    if rows:
        await conn.execute(insert(ConsentRecord), rows)


async def consent_history(*, session: AsyncSession, contact_id: int) -> list[ConsentRecord]:
    rows = await session.execute(
        select(ConsentRecord)
        .where(col(ConsentRecord.contact_id) == contact_id)
        .order_by(col(ConsentRecord.id))
    )
    return list(rows.scalars())


async def current_consent(conn: AsyncConnection, *, contact_ids: Iterable[int]) -> dict[int, str]:
    """Newest ledger status for each contact that has any; absent means never consented."""
    ids = list(contact_ids)
    out: dict[int, str] = {}
    for start in range(0, len(ids), 1000):
        batch = ids[start : start + 1000]
        newest = (
            select(func.max(ConsentRecord.id))
            .where(col(ConsentRecord.contact_id).in_(batch))
            .group_by(col(ConsentRecord.contact_id))
        )
        rows = await conn.execute(
            select(ConsentRecord.contact_id, ConsentRecord.status).where(  # type: ignore[call-overload]
                col(ConsentRecord.id).in_(newest)
            )
        )
        out.update(dict(rows.all()))
    return out


@dataclass(frozen=True)
class ContactAddress:
    id: int
    email: str


async def consenting_contacts(
    conn: AsyncConnection, *, tenant_id: str, limit: int
) -> list[ContactAddress]:
    """The first ``limit`` contacts by id whose newest consent is granted."""
    found: list[ContactAddress] = []
    after = 0
    while len(found) < limit:
        rows = (
            await conn.execute(
                select(Contact.id, Contact.email)  # type: ignore[call-overload]
                .where(col(Contact.tenant_id) == tenant_id, col(Contact.id) > after)
                .order_by(col(Contact.id))
                .limit(max(2 * (limit - len(found)), 100))
            )
        ).all()
        if not rows:
            break
        consent = await current_consent(conn, contact_ids=(contact_id for contact_id, _ in rows))
        found += [
            ContactAddress(cid, email)
            for cid, email in rows
            if consent.get(cid) == ConsentStatus.GRANTED
        ]
        after = rows[-1][0]
    return found[:limit]
