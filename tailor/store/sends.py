"""Send rows: the idempotency ledger of delivery, one row per campaign x contact.

State machine (see docs/architecture.md, "Exactly one email per recipient"):

    pending ──(consent ok, committed right before the provider can accept)──► dispatched ──► sent
       │                                                                        │
       └──► suppressed (no consent)                               failed ◄──────┘ (refused)

A send is only ever moved out of ``pending`` by a conditional update that checks both its status
and the contact's newest consent in the same statement, so two attempts racing on one chunk, or a
revocation racing a send, cannot both win.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from tailor.models import ConsentRecord, ConsentStatus, Contact, Send, SendStatus, utcnow
from tailor.segments import segment_filter


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
    (send-time optimisation, ``tailor.segments.due_filter``)."""
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
) -> None:
    """Create the missing pending rows for these contacts (a retry finds most already there)."""
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
) -> list[tuple[int, int, str, str]]:
    """(send id, contact id, status, message id) for these contacts' sends in a campaign."""
    rows = await conn.execute(
        select(Send.id, Send.contact_id, Send.status, Send.message_id).where(  # type: ignore[call-overload]
            col(Send.campaign_id) == campaign_id,
            col(Send.contact_id).in_(contact_ids),
            col(Send.occurrence) == occurrence,
        )
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def claim_for_dispatch(
    conn: AsyncConnection, *, send_ids: Sequence[int], provider: str
) -> set[int]:
    """Atomically claim the pending sends whose contact consents now; returns those claimed.

    One statement checks status and the newest consent row together, so a concurrent attempt or
    a revocation committed first always wins. Whatever is not returned must not be delivered.
    """
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
    return {int(send_id) for send_id in result.scalars() if send_id is not None}


_CLAIM_SQLITE = """
UPDATE send SET status = 'dispatched', dispatched_at = ?, provider = ?, attempts = attempts + 1
WHERE id IN ({ids}) AND status = 'pending'
  AND (SELECT c.status FROM consent_record AS c WHERE c.contact_id = send.contact_id
       ORDER BY c.id DESC LIMIT 1) = 'granted'
RETURNING id
"""


def claim_for_dispatch_sqlite(
    conn: sqlite3.Connection, send_ids: Sequence[int], provider: str
) -> set[int]:
    """``claim_for_dispatch`` on a plain sqlite3 connection inside the caller's transaction:
    the same statement, run synchronously so the caller can act the instant it commits."""
    # The storage format SQLAlchemy uses for DateTime on SQLite (naive UTC).
    now = utcnow().replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    sql = _CLAIM_SQLITE.format(ids=", ".join("?" * len(send_ids)))
    rows = conn.execute(sql, [now, provider, *send_ids]).fetchall()
    return {int(row[0]) for row in rows}


async def mark(
    conn: AsyncConnection,
    *,
    send_ids: Iterable[int],
    status: SendStatus,
    from_status: SendStatus,
    error: str | None = None,
) -> None:
    ids = list(send_ids)
    for start in range(0, len(ids), 1000):
        await conn.execute(
            update(Send)
            .where(
                col(Send.id).in_(ids[start : start + 1000]),
                col(Send.status) == from_status.value,
            )
            .values(status=status.value, error=error)
        )


async def mark_sent(
    conn: AsyncConnection, accepted: Sequence[tuple[int, str, str, dict[str, Any]]]
) -> None:
    """Record the provider's acceptance: (send id, provider message id, generator, explain)."""
    if not accepted:
        return
    now = utcnow()
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
            {"send_id": send_id, "pmid": pmid[:300], "made_by": generator, "why": why}
            for send_id, pmid, generator, why in accepted
        ],
    )
