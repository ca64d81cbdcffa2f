"""ESP event rows, and what they change: a send's provider state, a contact's soft bounces in a
row, and the consent ledger (suppressed / revoked).

Written for batches (SendGrid posts up to ~1,000 events at once): each function is one statement
or a handful whatever the batch size, on SQLite and PostgreSQL alike. Events are stored with
``ON CONFLICT DO NOTHING`` on (provider, provider_event_id), so a retried or concurrent delivery
of the same event is stored once and its effects applied once (by whoever inserted it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from tailor.consent.ledger import LedgerEntry
from tailor.models import Campaign, ConsentStatus, Contact, EspEvent, Send, utcnow
from tailor.store.consent import append_to_ledger, current_consent


@dataclass(frozen=True, slots=True)
class SendRef:
    """What an event needs to know about the send it reports on."""

    id: int
    tenant_id: str
    contact_id: int
    message_id: str  # as stored: with angle brackets
    esp_state: str | None
    delivered_at: datetime | None = None  # when the provider took it (or Tailor claimed it)


def _message_id_keys(bare: str) -> list[tuple[str, int, str]]:
    """(campaign id, contact id, occurrence) a Tailor Message-ID could have been made from
    (``tailor.store.sends.message_id_for``): lets the lookup use the send's unique index instead
    of scanning for the text."""
    local = bare.rpartition("@")[0]
    parts = local.split(".")
    return [
        (".".join(parts[:i]), int(parts[i]), ".".join(parts[i + 1 :]))
        for i in range(1, len(parts))
        if parts[i].isdigit() and len(parts[i]) < 19
    ]


async def find_sends(
    conn: AsyncConnection, *, send_ids: Collection[int], message_ids: Collection[str]
) -> tuple[dict[int, SendRef], dict[str, SendRef]]:
    """The sends named by id, and by bare Message-ID (without brackets), with their tenant."""
    keys = {key for bare in message_ids for key in _message_id_keys(bare)}
    wanted = {f"<{bare}>" for bare in message_ids}
    conditions: list[ColumnElement[bool]] = []
    if send_ids:
        conditions.append(col(Send.id).in_(sorted(send_ids)))
    if keys:
        conditions.append(
            col(Send.contact_id).in_(sorted({contact for _, contact, _ in keys}))
            & col(Send.campaign_id).in_(sorted({campaign for campaign, _, _ in keys}))
            & col(Send.message_id).in_(sorted(wanted))
        )
    by_id: dict[int, SendRef] = {}
    by_message: dict[str, SendRef] = {}
    if not conditions:
        return by_id, by_message
    rows = await conn.execute(
        select(  # type: ignore[call-overload]
            Send.id,
            Campaign.tenant_id,
            Send.contact_id,
            Send.message_id,
            Send.esp_state,
            Send.sent_at,
            Send.dispatched_at,
        )  # fmt: skip
        .join(Campaign, col(Campaign.id) == col(Send.campaign_id))
        .where(or_(*conditions))
    )
    for send_id, tenant_id, contact_id, message_id, esp_state, sent_at, dispatched_at in rows:
        ref = SendRef(send_id, tenant_id, contact_id, message_id, esp_state,
                      sent_at or dispatched_at)  # fmt: skip
        if ref.id in send_ids:
            by_id[ref.id] = ref
        if ref.message_id in wanted:
            by_message[ref.message_id[1:-1]] = ref
    return by_id, by_message


async def insert_new_events(
    conn: AsyncConnection, *, rows: Sequence[Mapping[str, Any]]
) -> set[tuple[str, str]]:
    """Store the events not stored before; returns the (provider, provider_event_id) of those
    this call inserted (a duplicate, in the batch or from earlier, is not among them)."""
    unique = list({(r["provider"], r["provider_event_id"]): r for r in rows}.values())
    if not unique:
        return set()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    table = EspEvent.__table__  # type: ignore[attr-defined]  # Core, not ORM: the hot path
    # One compiled statement, cached, executed with the whole list: SQLAlchemy's
    # "insertmanyvalues" sends it as multi-row INSERTs and gathers what RETURNING gives back.
    statement = (
        dialect.insert(table)
        .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
        .returning(table.c.provider, table.c.provider_event_id)
    )
    now = utcnow()
    result = await conn.execute(statement, [{"received_at": now, **row} for row in unique])
    inserted = {(provider, event_id) for provider, event_id in result}
    return inserted


async def raise_esp_states(
    conn: AsyncConnection, *, state: str, send_ids: Collection[int], below: Collection[str]
) -> None:
    """Move these sends to ``state`` where they are unset or in one of the ``below`` states.
    The condition sits in the statement, so a concurrent request that already moved a send
    higher is never undone."""
    if not send_ids:
        return
    await conn.execute(
        update(Send)
        .where(
            col(Send.id).in_(sorted(send_ids)),
            or_(col(Send.esp_state).is_(None), col(Send.esp_state).in_(sorted(below))),
        )
        .values(esp_state=state)
    )


async def count_soft_bounces(
    conn: AsyncConnection, *, changes: Mapping[int, tuple[bool, int]]
) -> dict[int, int]:
    """Apply (reset first?, soft bounces to add) to each contact's run of soft bounces; returns
    the new run length of each contact changed."""
    groups: dict[tuple[bool, int], list[int]] = {}
    for contact_id, change in changes.items():
        groups.setdefault(change, []).append(contact_id)
    for (reset, added), contact_ids in groups.items():
        run = col(Contact.soft_bounces) + added if not reset else added
        await conn.execute(
            update(Contact).where(col(Contact.id).in_(sorted(contact_ids))).values(soft_bounces=run)
        )
    if not changes:
        return {}
    rows = await conn.execute(
        select(Contact.id, Contact.soft_bounces).where(  # type: ignore[call-overload]
            col(Contact.id).in_(sorted(changes))
        )
    )
    return dict(rows.all())


@dataclass(frozen=True, slots=True)
class LedgerChange:
    tenant_id: str
    contact_id: int
    status: ConsentStatus  # SUPPRESSED or REVOKED
    source: str  # e.g. esp:sendgrid
    method: str  # bounce, complaint, unsubscribe
    recorded_by: str


# A change is recorded unless the newest row already says this or something at least as strong.
_ALREADY: dict[ConsentStatus, frozenset[str]] = {
    ConsentStatus.SUPPRESSED: frozenset({ConsentStatus.SUPPRESSED.value}),
    ConsentStatus.REVOKED: frozenset({ConsentStatus.REVOKED.value, ConsentStatus.SUPPRESSED.value}),
}


async def append_consent_changes(
    conn: AsyncConnection, *, changes: Iterable[LedgerChange]
) -> list[LedgerChange]:
    """Append a ledger row for each change the contact's newest row does not already say;
    returns those appended (at most one per contact, the strongest)."""
    strongest: dict[int, LedgerChange] = {}
    for change in changes:
        held = strongest.get(change.contact_id)
        if held is None or (
            held.status is ConsentStatus.REVOKED and change.status is ConsentStatus.SUPPRESSED
        ):
            strongest[change.contact_id] = change
    if not strongest:
        return []
    newest = await current_consent(conn, contact_ids=strongest)
    due = [c for c in strongest.values() if newest.get(c.contact_id) not in _ALREADY[c.status]]
    now = utcnow()
    await append_to_ledger(
        conn,
        [
            LedgerEntry(
                tenant_id=c.tenant_id,
                contact_id=c.contact_id,
                status=c.status.value,
                source=c.source,
                method=c.method,
                wording_version="-",
                recorded_by=c.recorded_by,
                recorded_at=now,
            )  # fmt: skip
            for c in due
        ],
    )
    return due
