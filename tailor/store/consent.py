"""The consent ledger: append-only, each contact's rows a hash chain (``tailor.consent.ledger``).
Current consent is the newest row per contact. Every row is appended through ``append_to_ledger``
or ``record_consent``, which link it to the contact's chain."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from tailor.consent.casl import IMPLIED_FOR, LAPSED, lapses_at
from tailor.consent.ledger import Head, LedgerEntry, chain
from tailor.models import ConsentRecord, ConsentStatus, Contact, Send, SendStatus, utcnow

# The advisory-lock namespace (PostgreSQL) that orders revocations and claims, tenant by tenant.
CONSENT_LOCK = 7_311_401
# The one (PostgreSQL) in which a writer holds each contact whose chain it extends, to commit.
CHAIN_LOCK = 7_311_402
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
    entry = LedgerEntry(
        tenant_id=tenant_id, contact_id=contact_id, status=status.value, source=source,
        method=method, wording_version=wording_version, recorded_by=recorded_by,
        recorded_at=utcnow(),
    )  # fmt: skip
    (row,) = await chain_entries(await session.connection(), [entry])
    record = ConsentRecord(**row)
    session.add(record)
    await session.flush()
    return record


async def chain_entries(
    conn: AsyncConnection, entries: Sequence[LedgerEntry], *, new_contacts: bool = False
) -> list[dict[str, Any]]:
    """The ledger rows for ``entries``, each linked to its contact's chain; the caller inserts
    them in this transaction. On PostgreSQL the contacts stay locked to the commit, so two
    writers never extend one chain from the same head (the unique ``seq`` would refuse the
    second); on SQLite the write transaction's lock does that. ``new_contacts``: contacts
    inserted in this transaction, whose chains start here (no lock, no read)."""
    if not entries:
        return []
    heads: dict[int, Head] = {}
    if not new_contacts:
        ids = sorted({e.contact_id for e in entries})
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text(
                    "SELECT pg_advisory_xact_lock(:space, c) "
                    "FROM (SELECT unnest(CAST(:ids AS integer[])) AS c ORDER BY 1) AS held"
                ),
                {"space": CHAIN_LOCK, "ids": ids},
            )
        newest = await newest_rows(conn, contact_ids=ids)
        heads = {c: Head(row.seq, row.row_hash) for c, row in newest.items()}
    return chain(list(entries), heads)


async def append_to_ledger(
    conn: AsyncConnection, entries: Sequence[LedgerEntry], *, new_contacts: bool = False
) -> None:
    """Append ``entries`` in this transaction (see ``chain_entries``)."""
    rows = await chain_entries(conn, entries, new_contacts=new_contacts)
    if rows:
        await conn.execute(insert(ConsentRecord), rows)


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
    await order_against_claims(conn, tenant_ids=[tenant_id])
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


async def order_against_claims(conn: AsyncConnection, *, tenant_ids: Iterable[str]) -> None:
    """Before a transaction that will stop sends to some of these tenants' contacts commits:
    on PostgreSQL, hold each tenant's consent lock exclusively to the commit, so every claim
    either committed before (and is what it is) or runs after and sees the change (claims
    hold it shared: ``tailor.store.sends``). On SQLite the write lock already orders them."""
    if conn.dialect.name != "postgresql":
        return
    for tenant_id in sorted(set(tenant_ids)):  # one order everywhere: no deadlock between two
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:space, hashtext(:tenant))"),
            {"space": CONSENT_LOCK, "tenant": tenant_id},
        )


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
    now = utcnow()
    await append_to_ledger(
        conn,
        [
            LedgerEntry(
                tenant_id=tenant_id,
                contact_id=contact_id,
                status=ConsentStatus.SUPPRESSED.value,
                source=source,
                method="provider-refusal",
                wording_version="-",
                recorded_by="system:delivery",
                recorded_at=now,
            )  # fmt: skip
            for contact_id in sorted(set(contact_ids))
        ],
    )


async def consent_history(*, session: AsyncSession, contact_id: int) -> list[ConsentRecord]:
    rows = await session.execute(
        select(ConsentRecord)
        .where(col(ConsentRecord.contact_id) == contact_id)
        .order_by(col(ConsentRecord.id))
    )
    return list(rows.scalars())


@dataclass(frozen=True)
class NewestRow:
    """A contact's newest ledger row: what their consent is, and how it was given."""

    tenant_id: str
    status: str
    method: str
    recorded_at: datetime
    seq: int  # its place in the contact's chain, and its hash: the chain's head
    row_hash: str

    def lapsed(self, now: datetime) -> bool:
        """Implied consent (CASL) past its window by ``now``."""
        lapses = lapses_at(self.status, self.method, self.recorded_at)
        return lapses is not None and lapses <= now

    def consenting(self, now: datetime) -> bool:
        """Granted, and not implied consent that has lapsed by ``now``."""
        return self.status == ConsentStatus.GRANTED and not self.lapsed(now)


async def newest_rows(conn: AsyncConnection, *, contact_ids: Iterable[int]) -> dict[int, NewestRow]:
    """Each contact's newest ledger row (absent: never consented). The newest by id is the
    chain's head too: rows of one contact are appended under its lock, in ``seq`` order."""
    ids = list(contact_ids)
    out: dict[int, NewestRow] = {}
    for start in range(0, len(ids), 1000):
        newest = (
            select(func.max(ConsentRecord.id))
            .where(col(ConsentRecord.contact_id).in_(ids[start : start + 1000]))
            .group_by(col(ConsentRecord.contact_id))
        )
        rows = await conn.execute(
            select(ConsentRecord.contact_id, ConsentRecord.tenant_id, ConsentRecord.status,  # type: ignore[call-overload]
                   ConsentRecord.method, ConsentRecord.recorded_at, ConsentRecord.seq,
                   ConsentRecord.row_hash)
            .where(col(ConsentRecord.id).in_(newest))
        )  # fmt: skip
        out.update({
            int(c): NewestRow(str(t), str(s), str(m), r, int(q), str(h))
            for c, t, s, m, r, q, h in rows.all()
        })  # fmt: skip
    return out


async def lapse_implied_consent(
    conn: AsyncConnection, *, contact_ids: Iterable[int], now: datetime
) -> list[int]:
    """Append a revocation for each of these contacts whose implied consent has lapsed
    (``tailor.consent.casl``); returns them."""
    newest = await newest_rows(conn, contact_ids=contact_ids)
    lapsed = sorted(cid for cid, row in newest.items() if row.lapsed(now))
    await append_to_ledger(
        conn,
        [
            LedgerEntry(
                tenant_id=newest[cid].tenant_id,
                contact_id=cid,
                status=ConsentStatus.REVOKED.value,
                source="casl",
                method=LAPSED,
                wording_version="-",
                recorded_by="system:casl",
                recorded_at=now,
            )  # fmt: skip
            for cid in lapsed
        ],
    )
    return lapsed


@dataclass(frozen=True)
class ImpliedConsent:
    contact_id: int
    method: str
    granted_at: datetime
    lapses_at: datetime


async def lapsing_consent(
    conn: AsyncConnection, *, tenant_id: str, before: datetime, limit: int
) -> list[ImpliedConsent]:
    """The tenant's contacts whose consent is implied and lapses before ``before`` (or has
    lapsed, not yet recorded), soonest first."""
    newest = (
        select(func.max(ConsentRecord.id))
        .where(col(ConsentRecord.tenant_id) == tenant_id)
        .group_by(col(ConsentRecord.contact_id))
    )
    lapsing = or_(*(
        and_(col(ConsentRecord.method) == method, col(ConsentRecord.recorded_at) < before - window)
        for method, window in IMPLIED_FOR.items()
    ))  # fmt: skip
    rows = await conn.execute(
        select(ConsentRecord.contact_id, ConsentRecord.method, ConsentRecord.recorded_at)  # type: ignore[call-overload]
        .where(
            col(ConsentRecord.tenant_id) == tenant_id,
            col(ConsentRecord.status) == ConsentStatus.GRANTED.value,
            lapsing,
            col(ConsentRecord.id).in_(newest),
        )
        .order_by(col(ConsentRecord.recorded_at), col(ConsentRecord.contact_id))
        .limit(limit)
    )
    return [ImpliedConsent(int(c), str(m), r, r + IMPLIED_FOR[str(m)]) for c, m, r in rows.all()]


async def current_consent(conn: AsyncConnection, *, contact_ids: Iterable[int]) -> dict[int, str]:
    """Newest ledger status for each contact that has any; absent means never consented."""
    return {c: row.status for c, row in (await newest_rows(conn, contact_ids=contact_ids)).items()}


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


async def ledger_pages(
    conn: AsyncConnection,
    *,
    tenant_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page: int = 5000,
) -> AsyncIterator[list[dict[str, Any]]]:
    """The ledger's rows (of a tenant, recorded in ``[since, until)``), contact by contact in
    chain order, a page at a time."""
    where: list[ColumnElement[bool]] = []
    if tenant_id is not None:
        where.append(col(ConsentRecord.tenant_id) == tenant_id)
    if since is not None:
        where.append(col(ConsentRecord.recorded_at) >= since)
    if until is not None:
        where.append(col(ConsentRecord.recorded_at) < until)
    after = (-1, 0)
    while True:
        rows = (
            (
                await conn.execute(
                    select(ConsentRecord)
                    .where(
                        *where,
                        tuple_(col(ConsentRecord.contact_id), col(ConsentRecord.seq))
                        > tuple_(*after),
                    )
                    .order_by(col(ConsentRecord.contact_id), col(ConsentRecord.seq))
                    .limit(page)
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            return
        found = [dict(r) for r in rows]
        yield found
        after = (found[-1]["contact_id"], found[-1]["seq"])


async def ledger_count(conn: AsyncConnection, *, tenant_id: str | None = None) -> int:
    """How many rows ``ledger_pages`` will go through (for a progress bar)."""
    query = select(func.count()).select_from(ConsentRecord)
    if tenant_id is not None:
        query = query.where(col(ConsentRecord.tenant_id) == tenant_id)
    return int(await conn.scalar(query) or 0)
