"""Remembered creates: one row per (tenant, Idempotency-Key, route), the claim of the first
request and then its response."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from tailor.models import IdempotentRequest


async def insert_claim(
    *,
    session: AsyncSession,
    tenant_id: str,
    idempotency_key: str,
    route: str,
    body_sha256: str,
    now: datetime,
) -> IdempotentRequest | None:
    """A new in-flight claim, or None when the tenant already has one for this key and route
    (PostgreSQL waits for a concurrent claimer to commit before deciding)."""
    claim = IdempotentRequest(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        route=route,
        body_sha256=body_sha256,
        created_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(claim)
            await session.flush()
    except IntegrityError:
        return None
    return claim


async def find_claim(
    *, session: AsyncSession, tenant_id: str, idempotency_key: str, route: str
) -> IdempotentRequest | None:
    return (
        await session.execute(
            select(IdempotentRequest).where(
                col(IdempotentRequest.tenant_id) == tenant_id,
                col(IdempotentRequest.idempotency_key) == idempotency_key,
                col(IdempotentRequest.route) == route,
            )
        )
    ).scalar_one_or_none()


async def complete_claim(
    *, session: AsyncSession, claim_id: int, status_code: int, response: dict[str, Any]
) -> None:
    await session.execute(
        update(IdempotentRequest)
        .where(col(IdempotentRequest.id) == claim_id)
        .values(status_code=status_code, response=response)
    )


async def delete_claim(*, session: AsyncSession, claim_id: int) -> None:
    await session.execute(delete(IdempotentRequest).where(col(IdempotentRequest.id) == claim_id))


async def delete_claims_before(*, session: AsyncSession, before: datetime) -> int:
    """Forget every tenant's claims made before ``before``; how many there were."""
    result = await session.execute(
        delete(IdempotentRequest).where(col(IdempotentRequest.created_at) < before)
    )
    return int(getattr(result, "rowcount", 0) or 0)
