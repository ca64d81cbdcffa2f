"""API keys: stored by the SHA-256 of their secret, found by their prefix."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col, select

from tailor.errors import NotFound
from tailor.models import ApiKey


async def add_key(*, session: AsyncSession, key: ApiKey) -> ApiKey:
    session.add(key)
    await session.flush()
    return key


async def key_by_prefix(*, session: AsyncSession, prefix: str) -> ApiKey | None:
    return (
        await session.execute(select(ApiKey).where(col(ApiKey.prefix) == prefix))
    ).scalar_one_or_none()


async def keys_of(*, session: AsyncSession, tenant_id: str | None) -> list[ApiKey]:
    """A tenant's keys (None: the platform's), oldest first, revoked ones included."""
    query = select(ApiKey).where(
        col(ApiKey.tenant_id).is_(None) if tenant_id is None else col(ApiKey.tenant_id) == tenant_id
    )
    return list((await session.execute(query.order_by(col(ApiKey.created_at)))).scalars())


async def get_key(*, session: AsyncSession, tenant_id: str | None, key_id: str) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None or key.tenant_id != tenant_id:
        raise NotFound("API key", key_id)
    return key


async def revoke_key(
    *, session: AsyncSession, tenant_id: str | None, key_id: str, now: datetime
) -> ApiKey:
    """Revoke a key; revoking it again keeps the first time."""
    key = await get_key(session=session, tenant_id=tenant_id, key_id=key_id)
    if key.revoked_at is None:
        key.revoked_at = now
        await session.flush()
    return key


async def touch_key(conn: AsyncConnection, *, key_id: str, now: datetime, every: timedelta) -> None:
    """Record a use; at most one write per ``every`` per key (concurrent requests race to it)."""
    stale = now - every
    await conn.execute(
        update(ApiKey)
        .where(col(ApiKey.id) == key_id)
        .where(col(ApiKey.last_used_at).is_(None) | (col(ApiKey.last_used_at) < stale))
        .values(last_used_at=now)
    )
