"""Reads for reports: sums of rollup rows (``tailor.store.rollups``) and cohort counters. Each is
one grouped statement over a small table, whatever the number of sends behind it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from tailor.models import Campaign, CohortRollup, Contact, Send, SendRollup, Tenant
from tailor.store.rollups import COUNTERS

GROUPS = frozenset({"campaign_id", "hour", "generator", "provider", "control"})


@dataclass(frozen=True, slots=True)
class RollupSum:
    group: dict[str, Any]  # the grouping columns' values
    counts: dict[str, int]  # every counter of ``COUNTERS``


async def sum_rollups(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    campaign_ids: Collection[str] | None = None,
    by: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[RollupSum]:
    """The tenant's counters summed per ``by`` group, over some campaigns (or all), hours in
    [since, until)."""
    if unknown := set(by) - GROUPS:
        raise ValueError(f"cannot group rollups by {sorted(unknown)}")
    table = SendRollup.__table__  # type: ignore[attr-defined]
    keys = [table.c[name] for name in by]
    where = [table.c.tenant_id == tenant_id]
    if campaign_ids is not None:
        where.append(table.c.campaign_id.in_(sorted(campaign_ids)))
    if since is not None:
        where.append(table.c.hour >= since)
    if until is not None:
        where.append(table.c.hour < until)
    statement = (
        select(*keys, *[func.coalesce(func.sum(table.c[c]), 0) for c in COUNTERS])
        .where(*where)
        .group_by(*keys)
        .order_by(*keys)
    )
    rows = await conn.execute(statement)
    sums: list[RollupSum] = []
    for row in rows:
        group = dict(zip(by, row[: len(by)], strict=True))
        counts = dict(zip(COUNTERS, (int(v) for v in row[len(by) :]), strict=True))
        if campaign_ids is None and not by and not any(counts.values()):
            continue
        sums.append(RollupSum(group, counts))
    return sums


@dataclass(frozen=True, slots=True)
class CohortCell:
    month: str  # signup month, YYYY-MM
    week: int  # weeks since signup
    metric: str  # open, click or order
    contacts: int


async def cohort_cells(
    conn: AsyncConnection, *, tenant_id: str, since_month: str
) -> list[CohortCell]:
    rows = await conn.execute(
        select(  # type: ignore[call-overload]
            CohortRollup.month, CohortRollup.week, CohortRollup.metric, CohortRollup.contacts
        )
        .where(col(CohortRollup.tenant_id) == tenant_id, col(CohortRollup.month) >= since_month)
        .order_by(col(CohortRollup.month), col(CohortRollup.week), col(CohortRollup.metric))
    )
    return [CohortCell(*row) for row in rows]


async def cohort_sizes(conn: AsyncConnection, *, tenant_id: str, since: datetime) -> dict[str, int]:
    """Contacts per signup month (YYYY-MM), from ``since``."""
    created = col(Contact.created_at)
    month = (
        func.to_char(created, "YYYY-MM")
        if conn.dialect.name == "postgresql"
        else func.strftime("%Y-%m", created)
    )
    rows = await conn.execute(
        select(month, func.count())
        .where(col(Contact.tenant_id) == tenant_id, created >= since)
        .group_by(month)
    )
    return {str(m): int(n) for m, n in rows}


@dataclass(frozen=True, slots=True)
class CampaignHealth:
    """A campaign's deliverability so far, and its tenant's limits (``tailor.delivery.guard``)."""

    campaign_id: str
    tenant_id: str
    kind: str
    status: str
    paused_reason: str | None
    sent: int
    bounced: int
    complained: int
    complaint_limit: float
    bounce_limit: float
    min_sent: int


async def campaign_health(
    conn: AsyncConnection, *, send_ids: Collection[int]
) -> list[CampaignHealth]:
    """The health of every campaign one of these sends belongs to."""
    if not send_ids:
        return []
    campaigns = (
        select(Send.campaign_id).where(col(Send.id).in_(sorted(send_ids))).distinct()  # type: ignore[call-overload]
    )
    r = SendRollup.__table__  # type: ignore[attr-defined]
    sums = (
        select(
            r.c.campaign_id,
            func.sum(r.c.sent).label("sent"),
            func.sum(r.c.bounced).label("bounced"),
            func.sum(r.c.complained).label("complained"),
        )
        .where(r.c.campaign_id.in_(campaigns))
        .group_by(r.c.campaign_id)
        .subquery()
    )
    rows = await conn.execute(
        select(  # type: ignore[call-overload]
            Campaign.id, Campaign.tenant_id, Campaign.kind, Campaign.status,
            Campaign.paused_reason, sums.c.sent, sums.c.bounced, sums.c.complained,
            Tenant.pause_complaint_rate, Tenant.pause_bounce_rate, Tenant.pause_min_sent,
        )
        .join(sums, sums.c.campaign_id == col(Campaign.id))
        .join(Tenant, col(Tenant.id) == col(Campaign.tenant_id))
    )  # fmt: skip
    return [
        CampaignHealth(
            campaign_id=row[0], tenant_id=row[1], kind=row[2], status=row[3],
            paused_reason=row[4], sent=int(row[5] or 0), bounced=int(row[6] or 0),
            complained=int(row[7] or 0), complaint_limit=row[8], bounce_limit=row[9],
            min_sent=row[10],
        )
        for row in rows
    ]  # fmt: skip


async def totals_by_tenant(conn: AsyncConnection) -> dict[str, dict[str, int]]:
    """Every tenant's counters summed over all its campaigns and hours (the metrics' source
    for email events: one grouped scan of the rollups, not of the sends)."""
    table = SendRollup.__table__  # type: ignore[attr-defined]
    rows = await conn.execute(
        select(table.c.tenant_id, *[func.coalesce(func.sum(table.c[c]), 0) for c in COUNTERS])
        .group_by(table.c.tenant_id)
        .order_by(table.c.tenant_id)
    )
    return {row[0]: dict(zip(COUNTERS, (int(v) for v in row[1:]), strict=True)) for row in rows}
