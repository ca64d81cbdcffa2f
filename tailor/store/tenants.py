from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from tailor.errors import NotFound
from tailor.models import Tenant


async def upsert_tenant(*, session: AsyncSession, tenant: Tenant) -> Tenant:
    existing = await session.get(Tenant, tenant.id)
    if existing is None:
        session.add(tenant)
        await session.flush()
        return tenant
    for field in ("name", "from_email", "from_name", "postal_address"):
        setattr(existing, field, getattr(tenant, field))
    await session.flush()
    return existing


async def daily_email_limit(conn: AsyncConnection, *, tenant_id: str) -> int | None:
    """Marketing emails a person may get from the tenant per local day."""
    limit = await conn.scalar(
        select(col(Tenant.daily_email_limit)).where(col(Tenant.id) == tenant_id)
    )
    return int(limit) if limit is not None else None


async def get_tenant(*, session: AsyncSession, tenant_id: str) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("tenant", tenant_id)
    return tenant
