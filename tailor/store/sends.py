"""Send rows: the idempotency ledger of delivery, one row per campaign x contact.

State machine (see docs/architecture.md, "Exactly one email per recipient"):

    pending ──(consent ok, committed right before the provider can accept)──► dispatched ──► sent
       │                                                                        │
       ├──► suppressed (no consent)                               failed ◄──────┘ (refused)
       └──► held_out (consenting, in a control group that is not mailed: ``tailor.holdout``)

A send is only ever moved out of ``pending`` by a conditional update that checks both its status
and the contact's newest consent in the same statement, so two attempts racing on one chunk, or a
revocation racing a send, cannot both win.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from tailor.errors import NotFound
from tailor.models import (
    Campaign,
    ConsentRecord,
    ConsentStatus,
    Contact,
    Send,
    SendStatus,
    utcnow,
)
from tailor.store.campaigns import DELIVERED
from tailor.store.consent import CONSENT_LOCK
from tailor.store.keyset import below
from tailor.store.rollups import STATUSES, count_known, count_sends, send_facts
from tailor.store.segments import segment_filter


@dataclass(frozen=True)
class SendRow:
    """A send as the pipeline reads it: which contact, where it stands, its Message-ID."""

    id: int
    contact_id: int
    status: str
    message_id: str
    control: bool = False  # in the campaign's control group


@dataclass(frozen=True)
class Accepted:
    """A provider took this send: its message id there, who wrote it, and why this email."""

    send_id: int
    provider_message_id: str
    generator: str
    why: dict[str, Any]


@dataclass(frozen=True)
class UnclearSend:
    """A send an earlier attempt left ``dispatched`` at an HTTP provider, with no answer."""

    id: int
    provider: str
    dispatched_at: datetime | None


def message_id_for(campaign_id: str, contact_id: int, domain: str, occurrence: str = "") -> str:
    """Deterministic, so every attempt of one send carries the same Message-ID."""
    suffix = f".{occurrence}" if occurrence else ""
    return f"<{campaign_id}.{contact_id}{suffix}@{domain}>"


async def segment_contact_ids(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    segment: dict[str, Any],
    after_contact_id: int,
    limit: int,
    up_to_contact_id: int | None = None,
    due: ColumnElement[bool] | None = None,
) -> list[int]:
    """Keyset page of contact ids in a segment, ascending; with ``due``, only those due now
    (send-time optimisation, ``tailor.store.segments.due_filter``)."""
    where = [segment_filter(tenant_id, segment), col(Contact.id) > after_contact_id]
    if due is not None:
        where.append(due)
    if up_to_contact_id is not None:
        where.append(col(Contact.id) <= up_to_contact_id)
    rows = await conn.execute(
        select(Contact.id).where(*where).order_by(col(Contact.id)).limit(limit)  # type: ignore[call-overload]
    )
    return [row for (row,) in rows]


async def ensure_send_rows(
    conn: AsyncConnection,
    *,
    campaign_id: str,
    contact_ids: Sequence[int],
    domain: str,
    occurrence: str = "",
    control: Collection[int] = (),
) -> None:
    """Create the missing pending rows for these contacts (a retry finds most already there);
    those in ``control`` are marked as the campaign's control group. A row's flag is set once,
    here: a retry never changes it."""
    if not contact_ids:
        return
    existing = set(
        (
            await conn.execute(
                select(Send.contact_id).where(  # type: ignore[call-overload]
                    col(Send.campaign_id) == campaign_id,
                    col(Send.contact_id).in_(contact_ids),
                    col(Send.occurrence) == occurrence,
                )
            )
        ).scalars()
    )
    now = utcnow()
    missing = [
        {
            "campaign_id": campaign_id,
            "contact_id": contact_id,
            "occurrence": occurrence,
            "status": SendStatus.PENDING.value,
            "message_id": message_id_for(campaign_id, contact_id, domain, occurrence),
            "control": contact_id in control,
            "attempts": 0,
            "created_at": now,
        }
        for contact_id in contact_ids
        if contact_id not in existing
    ]
    if missing:
        await conn.execute(insert(Send), missing)


async def sends_for(
    conn: AsyncConnection, *, campaign_id: str, contact_ids: Sequence[int], occurrence: str = ""
) -> list[SendRow]:
    """These contacts' sends in a campaign (one occurrence of it)."""
    rows = await conn.execute(
        select(Send.id, Send.contact_id, Send.status, Send.message_id, Send.control).where(  # type: ignore[call-overload]
            col(Send.campaign_id) == campaign_id,
            col(Send.contact_id).in_(contact_ids),
            col(Send.occurrence) == occurrence,
        )
    )
    return [SendRow(int(r[0]), int(r[1]), str(r[2]), str(r[3]), bool(r[4])) for r in rows]


async def hold_out(
    conn: AsyncConnection, *, send_ids: Sequence[int], why: dict[str, Any]
) -> list[int]:
    """Mark these pending control-group sends ``held_out``: deliberately not sent. Returns the
    ids this call moved, so whatever counts them (rollups) counts each once, however often an
    attempt is retried."""
    moved: list[int] = []
    for start in range(0, len(send_ids), 1000):
        result = await conn.execute(
            update(Send)
            .where(
                col(Send.id).in_(send_ids[start : start + 1000]),
                col(Send.status) == SendStatus.PENDING.value,
                col(Send.control),
            )
            .values(status=SendStatus.HELD_OUT.value, explain=why, generator=None)
            .returning(col(Send.id))
        )
        moved.extend(int(i) for i in result.scalars() if i is not None)
    await count_sends(conn, counter="held_out", send_ids=moved, at=utcnow())
    return moved


async def chunk_counts(
    conn: AsyncConnection,
    *,
    campaign_id: str,
    after_contact_id: int,
    last_contact_id: int,
    only: Sequence[int] | None = None,
) -> dict[str, int]:
    """Sends by status for a chunk's contact-id bounds (``only`` these contacts, if given)."""
    where = [
        col(Send.campaign_id) == campaign_id,
        col(Send.contact_id) > after_contact_id,
        col(Send.contact_id) <= last_contact_id,
    ]
    if only is not None:
        where.append(col(Send.contact_id).in_(only))
    rows = await conn.execute(
        select(Send.status, func.count()).where(*where).group_by(col(Send.status))  # type: ignore[call-overload]
    )
    return {str(status): int(n) for status, n in rows.all()}


async def delivered_today(conn: AsyncConnection, *, contact_id: int, since: datetime) -> int:
    """Marketing emails delivered to a person since ``since`` (their local midnight)."""
    count = await conn.scalar(
        select(func.count()).where(
            col(Send.contact_id) == contact_id,
            col(Send.status).in_(DELIVERED),
            col(Send.dispatched_at) >= since,
        )
    )
    return int(count or 0)


async def unclear_sends(
    conn: AsyncConnection,
    *,
    campaign_id: str,
    contact_ids: Sequence[int],
    occurrence: str,
    providers: Sequence[str],
) -> list[UnclearSend]:
    rows = await conn.execute(
        select(Send.id, Send.provider, Send.dispatched_at).where(  # type: ignore[call-overload]
            col(Send.campaign_id) == campaign_id,
            col(Send.contact_id).in_(contact_ids),
            col(Send.occurrence) == occurrence,
            col(Send.status) == SendStatus.DISPATCHED.value,
            col(Send.provider).in_(list(providers)),
        )
    )
    return [UnclearSend(int(i), str(p), d) for i, p, d in rows]


async def mark_reconciled(conn: AsyncConnection, *, send_ids: Sequence[int], provider: str) -> None:
    """These unclear sends are in the provider's records: sent."""
    if not send_ids:
        return
    now = utcnow()
    result = await conn.execute(
        update(Send)
        .where(col(Send.id).in_(send_ids), col(Send.status) == SendStatus.DISPATCHED.value)
        .values(
            status=SendStatus.SENT.value,
            sent_at=now,
            provider_message_id=f"reconciled:{provider}",
            explain={"reconciled": f"found in {provider}'s records after an "
                                   "attempt ended without its answer"},
        )
        .returning(col(Send.id))
    )  # fmt: skip
    await count_sends(
        conn, counter="sent", send_ids=[i for i in result.scalars() if i is not None], at=now
    )


async def claim_for_dispatch(
    conn: AsyncConnection,
    *,
    send_ids: Sequence[int],
    provider: str,
    links: Mapping[int, list[str]] | None = None,
) -> set[int]:
    """Atomically claim the pending sends whose contact consents now; returns those claimed.

    One statement checks status and the newest consent row together, so a concurrent attempt or
    a revocation committed first always wins. Whatever is not returned must not be delivered.
    ``links`` (send id -> the URLs behind its tracked links) are stored on the sends claimed, in
    the same transaction: once an email can reach someone, its click redirects work.
    """
    if conn.dialect.name == "postgresql":
        # After any revocation in these sends' tenants commits, and before the next one can
        # (tailor.store.consent.revoke_consent): the claim below then reads the ledger as it
        # stands once the lock is held (a statement's snapshot is taken when it starts).
        await conn.execute(_CONSENT_ORDER, {"space": CONSENT_LOCK, "ids": list(send_ids)})
    newest_consent = (
        select(ConsentRecord.status)  # type: ignore[call-overload]
        .where(col(ConsentRecord.contact_id) == col(Send.contact_id))
        .order_by(col(ConsentRecord.id).desc())
        .limit(1)
        .scalar_subquery()
    )
    result = await conn.execute(
        update(Send)
        .where(
            and_(
                col(Send.id).in_(send_ids),
                col(Send.status) == SendStatus.PENDING.value,
                newest_consent == ConsentStatus.GRANTED.value,
            )
        )
        .values(
            status=SendStatus.DISPATCHED.value,
            dispatched_at=utcnow(),
            provider=provider,
            attempts=col(Send.attempts) + 1,
        )
        .returning(col(Send.id))
    )
    claimed = {int(send_id) for send_id in result.scalars() if send_id is not None}
    tracked = [{"send_id": i, "tracked_links": links[i]} for i in claimed if links and i in links]
    if tracked:
        await conn.execute(
            update(Send)
            .where(col(Send.id) == bindparam("send_id"))
            .values(links=bindparam("tracked_links")),
            tracked,
        )
    return claimed


_CONSENT_ORDER = text(
    "SELECT pg_advisory_xact_lock_shared(:space, hashtext(t.tenant_id)) FROM "
    "(SELECT DISTINCT c.tenant_id FROM campaign AS c WHERE c.id IN "
    "(SELECT s.campaign_id FROM send AS s WHERE s.id = ANY(:ids)) ORDER BY c.tenant_id) AS t"
)
_CLAIM_SQLITE = """
UPDATE send SET status = 'dispatched', dispatched_at = ?, provider = ?, attempts = attempts + 1
WHERE id IN ({ids}) AND status = 'pending'
  AND (SELECT c.status FROM consent_record AS c WHERE c.contact_id = send.contact_id
       ORDER BY c.id DESC LIMIT 1) = 'granted'
RETURNING id
"""
_LINKS_SQLITE = "UPDATE send SET links = ? WHERE id = ?"


def claim_for_dispatch_sqlite(
    conn: sqlite3.Connection,
    send_ids: Sequence[int],
    provider: str,
    links: Mapping[int, list[str]] | None = None,
) -> set[int]:
    """``claim_for_dispatch`` on a plain sqlite3 connection inside the caller's transaction:
    the same statements, run synchronously so the caller can act the instant it commits."""
    # The storage format SQLAlchemy uses for DateTime on SQLite (naive UTC).
    now = utcnow().replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    sql = _CLAIM_SQLITE.format(ids=", ".join("?" * len(send_ids)))
    rows = conn.execute(sql, [now, provider, *send_ids]).fetchall()
    claimed = {int(row[0]) for row in rows}
    if links:
        # As SQLAlchemy's JSON type writes it (json.dumps), so the ORM reads it back.
        tracked = [(json.dumps(links[i]), i) for i in claimed if i in links]
        conn.executemany(_LINKS_SQLITE, tracked)
    return claimed


async def mark(
    conn: AsyncConnection,
    *,
    send_ids: Iterable[int],
    status: SendStatus,
    from_status: SendStatus,
    error: str | None = None,
) -> list[int]:
    """Move the sends still in ``from_status`` to ``status``; returns those it moved."""
    ids = list(send_ids)
    moved: list[int] = []
    for start in range(0, len(ids), 1000):
        result = await conn.execute(
            update(Send)
            .where(
                col(Send.id).in_(ids[start : start + 1000]),
                col(Send.status) == from_status.value,
            )
            .values(status=status.value, error=error)
            .returning(col(Send.id))
        )
        moved.extend(i for i in result.scalars() if i is not None)
    if status in STATUSES:
        await count_sends(conn, counter=STATUSES[status], send_ids=moved, at=utcnow())
    return moved


async def mark_sent(
    conn: AsyncConnection, *, accepted: Sequence[Accepted], at: datetime | None = None
) -> None:
    """Record the providers' acceptance of these sends (``at``, by default now), and count
    those not recorded before. Their links were stored with the claim."""
    if not accepted:
        return
    now = at or utcnow()
    ids = [a.send_id for a in accepted]
    # The same attempt records its acceptances once, but a retried flush must not count twice:
    # only sends still dispatched are moved (and counted). Their facts are read here, once,
    # for the counting (the generator is the one being recorded).
    dispatched = await send_facts(conn, send_ids=ids, status=SendStatus.DISPATCHED)
    await conn.execute(
        update(Send)
        .where(
            col(Send.id) == bindparam("send_id"),
            col(Send.status) == SendStatus.DISPATCHED.value,
        )
        .values(
            status=SendStatus.SENT.value,
            provider_message_id=bindparam("pmid"),
            generator=bindparam("made_by"),
            explain=bindparam("why"),
            sent_at=now,
        ),
        [
            {
                "send_id": a.send_id,
                "pmid": a.provider_message_id[:300],
                "made_by": a.generator,
                "why": a.why,
            }
            for a in accepted
        ],
    )
    made_by = {a.send_id: a.generator or "" for a in accepted}
    await count_known(
        conn,
        events=[("sent", send_id, now) for send_id in dispatched],
        facts={i: replace(f, generator=made_by[i]) for i, f in dispatched.items()},
    )


# --- Sends as the API reads them ---------------------------------------------------------------


async def campaign_sends(
    *, session: AsyncSession, tenant_id: str, campaign_id: str, after: int | None, limit: int
) -> list[Send]:
    """A keyset page of the campaign's sends, newest first (``tailor.store.keyset``); none
    if the campaign is another tenant's."""
    rows = await session.execute(
        select(Send)
        .join(Campaign, col(Campaign.id) == col(Send.campaign_id))
        .where(
            col(Send.campaign_id) == campaign_id,
            col(Campaign.tenant_id) == tenant_id,
            below(col(Send.id), after),
        )
        .order_by(col(Send.id).desc())
        .limit(limit)
    )
    return list(rows.scalars())


async def get_send(*, session: AsyncSession, send_id: int, tenant_id: str) -> Send:
    """The send, if it belongs to one of the tenant's campaigns."""
    send = await session.get(Send, send_id)
    campaign = await session.get(Campaign, send.campaign_id) if send else None
    if send is None or campaign is None or campaign.tenant_id != tenant_id:
        raise NotFound("send", send_id)
    return send


async def find_send(
    *,
    session: AsyncSession,
    tenant_id: str,
    message_id: str | None = None,
    campaign_id: str | None = None,
    contact_id: int | None = None,
) -> Send | None:
    """The tenant's newest send with this Message-ID or, without one, to this contact in this
    campaign."""
    where = (
        [col(Send.message_id) == message_id]
        if message_id is not None
        else [col(Send.campaign_id) == campaign_id, col(Send.contact_id) == contact_id]
    )
    send = (
        await session.execute(
            select(Send)
            .join(Campaign, col(Campaign.id) == col(Send.campaign_id))
            .where(*where, col(Campaign.tenant_id) == tenant_id)
            .order_by(col(Send.id).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return send


async def latest_sent(conn: AsyncConnection, *, campaign_id: str, contact_id: int) -> int | None:
    """The newest email of this campaign the contact was sent (a journey's may be several)."""
    found = await conn.execute(
        select(Send.id)  # type: ignore[call-overload]
        .where(
            col(Send.campaign_id) == campaign_id,
            col(Send.contact_id) == contact_id,
            col(Send.status) == SendStatus.SENT.value,
        )
        .order_by(col(Send.id).desc())
        .limit(1)
    )
    send_id = found.scalar()
    return int(send_id) if send_id is not None else None
