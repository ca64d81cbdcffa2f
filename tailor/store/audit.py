"""The audit log: appended one row per call, read newest first a page at a time.

Rows are never updated or deleted: triggers in migration 0008 refuse it in the database itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col, select

from tailor.models import AuditEntry


@dataclass(frozen=True)
class AuditFilter:
    """What a reader narrows the log to; None matches everything."""

    actor: str | None = None
    route: str | None = None  # the route template, e.g. /v1/campaigns/{campaign_id}
    outcome: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    target: str | None = None  # any id among the entry's targets, compared as text


async def append_entry(conn: AsyncConnection, *, entry: AuditEntry) -> None:
    """Insert one entry on the caller's connection (the caller owns the transaction)."""
    values = entry.model_dump(exclude={"id"})
    await conn.execute(sa.insert(AuditEntry).values(**values))


def _has_target(dialect: str, target: str) -> sa.ColumnElement[bool]:
    """True where some value of the entry's ``targets`` object equals ``target`` as text.
    Each backend has its own way to walk a JSON object's values."""
    if dialect == "postgresql":
        values = sa.func.json_each_text(col(AuditEntry.targets)).table_valued("key", "value")
    else:
        values = sa.func.json_each(col(AuditEntry.targets)).table_valued("value")
    return sa.exists(
        sa.select(1).select_from(values).where(sa.cast(values.c.value, sa.String) == target)
    )


async def audit_page(
    *,
    session: AsyncSession,
    tenant_id: str,
    filters: AuditFilter,
    before_id: int | None,
    limit: int,
) -> list[AuditEntry]:
    """Up to ``limit`` of the tenant's entries, newest first, older than ``before_id`` (the
    cursor: the last id of the previous page). Keyset on (tenant_id, id), so a page costs the
    same however deep it is."""
    query = select(AuditEntry).where(col(AuditEntry.tenant_id) == tenant_id)
    if before_id is not None:
        query = query.where(col(AuditEntry.id) < before_id)
    if filters.actor is not None:
        query = query.where(col(AuditEntry.actor) == filters.actor)
    if filters.route is not None:
        query = query.where(col(AuditEntry.route) == filters.route)
    if filters.outcome is not None:
        query = query.where(col(AuditEntry.outcome) == filters.outcome)
    if filters.since is not None:
        query = query.where(col(AuditEntry.at) >= filters.since)
    if filters.until is not None:
        query = query.where(col(AuditEntry.at) < filters.until)
    if filters.target is not None:
        query = query.where(_has_target(session.get_bind().dialect.name, filters.target))
    query = query.order_by(col(AuditEntry.id).desc()).limit(limit)
    return list((await session.execute(query)).scalars())
