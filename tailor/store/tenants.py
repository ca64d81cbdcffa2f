from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

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


async def get_tenant(*, session: AsyncSession, tenant_id: str) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("tenant", tenant_id)
    return tenant
