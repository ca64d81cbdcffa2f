"""Rollups: the counters reports read, added to in the transaction that records each fact.

Every writer of a countable fact (an email accepted or held out, a provider's report, a person's
open or click, an attributed order) calls ``count_sends`` with the send ids it just changed *for
the first time*, so a counter never counts the same email twice. The rows are keyed by campaign,
hour, tier, provider and arm (``tailor.models.SendRollup``); a report sums them.

Adding is one cached ``INSERT .. ON CONFLICT DO UPDATE SET n = n + excluded.n`` executed with
the whole batch, rows sorted by key so concurrent batches on PostgreSQL lock them in one order.

``rebuild_campaign`` recomputes one campaign's rows from the raw tables: for a backfill, a repair,
and the test that holds the incremental counters to the truth.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from tailor.models import (
    Campaign,
    CohortMark,
    CohortRollup,
    Contact,
    Conversion,
    Engagement,
    Send,
    SendRollup,
    SendStatus,
    utcnow,
)

COUNTERS = (
    "sent", "failed", "held_out", "delivered", "bounced", "soft_bounced", "complained",
    "unsubscribed", "opened", "clicked", "conversions", "revenue_cents", "conversions_open",
    "revenue_open_cents", "ordered",
)  # fmt: skip
KEY = ("tenant_id", "campaign_id", "hour", "generator", "provider", "control")
# An email's first of each kind of fact (an ``Engagement`` row each, unique per send and metric),
# and the counter it adds to: the provider's reports (``tailor.delivery.webhooks``), a person's
# opens and clicks, and an order within the window after it (for lift).
FIRSTS = {
    "delivered": "delivered",
    "bounce_hard": "bounced",
    "bounce_soft": "soft_bounced",
    "complaint": "complained",
    "unsubscribe": "unsubscribed",
    "open": "opened",
    "click": "clicked",
    "ordered": "ordered",
}
# The statuses whose reaching is counted, and as what (both incrementally and by a rebuild).
STATUSES = {SendStatus.SENT: "sent", SendStatus.FAILED: "failed", SendStatus.HELD_OUT: "held_out"}
# Rows a rebuild takes from the database at a time: fetched row by row, a million sends spend
# most of their time crossing from the driver to the caller and back.
STREAM_ROWS = 10_000


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, order=True, slots=True)
class RollupKey:
    tenant_id: str
    campaign_id: str
    hour: datetime
    generator: str
    provider: str
    control: bool


@dataclass(frozen=True, slots=True)
class SendFacts:
    """What a counter needs to know of a send to find its row."""

    tenant_id: str
    campaign_id: str
    contact_id: int
    generator: str
    provider: str
    control: bool

    def key(self, at: datetime) -> RollupKey:
        return RollupKey(
            self.tenant_id, self.campaign_id, hour_of(at), self.generator, self.provider,
            self.control,
        )  # fmt: skip


Counts = dict[RollupKey, dict[str, int]]


async def add(conn: AsyncConnection, *, counts: Mapping[RollupKey, Mapping[str, int]]) -> None:
    """Add ``counts`` (counter name → amount, per row) to the rollup rows, creating them."""
    rows = [
        {**_key_values(key), **{c: int(amounts.get(c, 0)) for c in COUNTERS}}
        for key, amounts in sorted(counts.items())
        if any(amounts.values())
    ]
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    table = SendRollup.__table__  # type: ignore[attr-defined]
    statement = dialect.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(KEY),
        set_={c: table.c[c] + statement.excluded[c] for c in COUNTERS},
    )
    await conn.execute(statement, rows)


def _key_values(key: RollupKey) -> dict[str, Any]:
    return {name: getattr(key, name) for name in KEY}


async def send_facts(
    conn: AsyncConnection, *, send_ids: Iterable[int], status: SendStatus | None = None
) -> dict[int, SendFacts]:
    """The sends' facts (only those in ``status``, if given)."""
    ids = sorted(set(send_ids))
    if not ids:
        return {}
    where: list[ColumnElement[bool]] = [col(Send.id).in_(ids)]
    if status is not None:
        where.append(col(Send.status) == status.value)
    rows = await conn.execute(
        select(  # type: ignore[call-overload]
            Send.id, Campaign.tenant_id, Send.campaign_id, Send.contact_id, Send.generator,
            Send.provider, Send.control,
        )
        .join(Campaign, col(Campaign.id) == col(Send.campaign_id))
        .where(*where)
    )  # fmt: skip
    return {
        row[0]: SendFacts(row[1], row[2], row[3], row[4] or "", row[5] or "", bool(row[6]))
        for row in rows
    }


async def count_sends(
    conn: AsyncConnection,
    *,
    counter: str,
    send_ids: Iterable[int],
    at: datetime,
    amounts: Mapping[int, int] | None = None,
) -> None:
    """Add one (or ``amounts[send_id]``) to ``counter`` for each send, in the hour of ``at``."""
    await count_events(conn, events=[(counter, send_id, at) for send_id in send_ids],
                       amounts=amounts)  # fmt: skip


async def count_events(
    conn: AsyncConnection,
    *,
    events: Sequence[tuple[str, int, datetime]],
    amounts: Mapping[int, int] | None = None,
) -> None:
    """Add each (counter, send id, when) to the rollups: one read of the sends, one upsert."""
    if not events:
        return
    if (unknown := {counter for counter, _, _ in events} - set(COUNTERS)) != set():
        raise ValueError(f"no such rollup counter: {sorted(unknown)}")
    facts = await send_facts(conn, send_ids=(send_id for _, send_id, _ in events))
    await count_known(conn, events=events, facts=facts, amounts=amounts)


async def count_known(
    conn: AsyncConnection,
    *,
    events: Sequence[tuple[str, int, datetime]],
    facts: Mapping[int, SendFacts],
    amounts: Mapping[int, int] | None = None,
) -> None:
    """``count_events`` for a caller that has read the sends' facts already (a send not in
    ``facts`` counts nothing)."""
    counts: Counts = defaultdict(lambda: defaultdict(int))
    for counter, send_id, at in events:
        found = facts.get(send_id)
        if found is not None:
            counts[found.key(at)][counter] += amounts.get(send_id, 1) if amounts else 1
    await add(conn, counts=counts)


async def count_firsts(
    conn: AsyncConnection, *, firsts: Sequence[tuple[str, int, datetime]]
) -> set[tuple[int, str]]:
    """Record each (metric, send id, when) that is the send's first of that metric (an
    ``Engagement`` row, unique per send and metric) and count it; returns the (send id, metric)
    pairs that were firsts. A repeat, now or in a concurrent transaction, counts nothing."""
    if not firsts:
        return set()
    facts = await send_facts(conn, send_ids=(send_id for _, send_id, _ in firsts))
    earliest: dict[tuple[int, str], datetime] = {}
    for metric, send_id, at in firsts:
        if send_id in facts:
            key = (send_id, metric)
            earliest[key] = min(at, earliest.get(key, at))
    if not earliest:
        return set()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    table = Engagement.__table__  # type: ignore[attr-defined]
    now = utcnow()
    result = await conn.execute(
        dialect.insert(table)
        .on_conflict_do_nothing(index_elements=["send_id", "metric"])
        .returning(table.c.send_id, table.c.metric),
        [
            {
                "tenant_id": facts[send_id].tenant_id, "campaign_id": facts[send_id].campaign_id,
                "send_id": send_id, "contact_id": facts[send_id].contact_id, "metric": metric,
                "occurred_at": at, "received_at": now,
            }
            for (send_id, metric), at in sorted(earliest.items())
        ],
    )  # fmt: skip
    inserted = {(send_id, metric) for send_id, metric in result}
    counts: Counts = defaultdict(lambda: defaultdict(int))
    for send_id, metric in inserted:
        if metric in FIRSTS:
            counts[facts[send_id].key(earliest[send_id, metric])][FIRSTS[metric]] += 1
    await add(conn, counts=counts)
    return inserted


# --- Cohorts ------------------------------------------------------------------------------------


async def mark_cohorts(
    conn: AsyncConnection, *, marks: Sequence[tuple[int, str, datetime]]
) -> None:
    """Each (contact id, metric, when): the first mark of a contact's metric in a week since
    signup adds one to its signup month's cohort row."""
    if not marks:
        return
    contacts = sorted({contact_id for contact_id, _, _ in marks})
    rows = await conn.execute(
        select(Contact.id, Contact.tenant_id, Contact.created_at).where(  # type: ignore[call-overload]
            col(Contact.id).in_(contacts)
        )
    )
    signups = {contact_id: (tenant, created) for contact_id, tenant, created in rows}
    wanted: dict[tuple[int, int, str], str] = {}
    months: dict[tuple[int, int, str], str] = {}
    for contact_id, metric, at in marks:
        if contact_id not in signups:
            continue
        tenant, created = signups[contact_id]
        created = created if created.tzinfo else created.replace(tzinfo=at.tzinfo)
        week = max(0, (at - created).days // 7)
        mark = (contact_id, week, metric)
        wanted[mark] = tenant
        months[mark] = created.strftime("%Y-%m")
    if not wanted:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    marks_table = CohortMark.__table__  # type: ignore[attr-defined]
    inserted = await conn.execute(
        dialect.insert(marks_table)
        .on_conflict_do_nothing(index_elements=["contact_id", "week", "metric"])
        .returning(marks_table.c.contact_id, marks_table.c.week, marks_table.c.metric),
        [{"contact_id": c, "week": w, "metric": m} for c, w, m in sorted(wanted)],
    )
    counts: dict[tuple[str, str, int, str], int] = defaultdict(int)
    for contact_id, week, metric in inserted:
        mark = (contact_id, week, metric)
        counts[(wanted[mark], months[mark], week, metric)] += 1
    if not counts:
        return
    table = CohortRollup.__table__  # type: ignore[attr-defined]
    statement = dialect.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=["tenant_id", "month", "week", "metric"],
        set_={"contacts": table.c.contacts + statement.excluded.contacts},
    )
    await conn.execute(
        statement,
        [
            {"tenant_id": t, "month": mo, "week": w, "metric": m, "contacts": n}
            for (t, mo, w, m), n in sorted(counts.items())
        ],
    )


# --- Rebuilding from the raw tables -------------------------------------------------------------


async def rebuild_campaign(conn: AsyncConnection, *, campaign_id: str) -> int:
    """Recompute one campaign's rollup rows from its sends, provider events, engagement and
    conversions; returns the number of rows written. Streams, so a million sends fit."""
    tenant = (
        await conn.execute(select(Campaign.tenant_id).where(col(Campaign.id) == campaign_id))  # type: ignore[call-overload]
    ).scalar_one()
    facts: dict[int, SendFacts] = {}
    counts: Counts = defaultdict(lambda: defaultdict(int))
    sends = await conn.stream(
        select(  # type: ignore[call-overload, misc]
            Send.id, Send.contact_id, Send.status, Send.generator, Send.provider, Send.control,
            Send.sent_at, Send.dispatched_at, Send.created_at,
        ).where(col(Send.campaign_id) == campaign_id)
    )  # fmt: skip
    async for batch in sends.partitions(STREAM_ROWS):
        for row in batch:
            send_id, contact_id, status, generator, provider, control, sent_at, dispatched, made = (
                row
            )
            fact = SendFacts(
                tenant, campaign_id, contact_id, generator or "", provider or "", bool(control)
            )
            facts[send_id] = fact
            counter = STATUSES.get(status)
            if counter is not None:
                counts[fact.key(sent_at or dispatched or made)][counter] += 1

    engaged = await conn.stream(
        select(Engagement.send_id, Engagement.metric, Engagement.occurred_at).where(  # type: ignore[call-overload]
            col(Engagement.campaign_id) == campaign_id, col(Engagement.metric).in_(list(FIRSTS))
        )
    )
    async for batch in engaged.partitions(STREAM_ROWS):
        for send_id, metric, at in batch:
            counts[facts[send_id].key(at)][FIRSTS[metric]] += 1

    orders = await conn.stream(
        select(Conversion.send_id, Conversion.rule, Conversion.revenue_cents,  # type: ignore[call-overload]
               Conversion.occurred_at)
        .where(col(Conversion.campaign_id) == campaign_id, col(Conversion.send_id).is_not(None))
    )  # fmt: skip
    async for batch in orders.partitions(STREAM_ROWS):
        for send_id, rule, revenue, at in batch:
            suffix = "_open" if rule == "open" else ""
            amounts = counts[facts[send_id].key(at)]
            amounts["conversions" + suffix] += 1
            amounts[f"revenue{suffix}_cents"] += revenue

    await conn.execute(delete(SendRollup).where(col(SendRollup.campaign_id) == campaign_id))
    await add(conn, counts=counts)
    return sum(1 for amounts in counts.values() if any(amounts.values()))
