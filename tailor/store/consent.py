"""The consent ledger: append-only. Current consent is the newest row per contact."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from tailor.models import ConsentRecord, ConsentStatus


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


async def consent_history(*, session: AsyncSession, contact_id: int) -> list[ConsentRecord]:
    rows = await session.execute(
        select(ConsentRecord)
        .where(col(ConsentRecord.contact_id) == contact_id)
        .order_by(col(ConsentRecord.id))
    )
    return list(rows.scalars())


async def current_consent(conn: AsyncConnection, contact_ids: Iterable[int]) -> dict[int, str]:
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
