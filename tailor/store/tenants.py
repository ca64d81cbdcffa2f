from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


async def add_tenant(*, session: AsyncSession, tenant: Tenant) -> Tenant:
    session.add(tenant)
    await session.flush()
    return tenant


async def tenant_exists(*, session: AsyncSession, tenant_id: str) -> bool:
    return await session.get(Tenant, tenant_id) is not None


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


# --- The API's writes --------------------------------------------------------------------------


async def set_default_template_version(
    *, session: AsyncSession, tenant: Tenant, template_version_id: int | None
) -> None:
    """The version a recipient gets when a campaign's template cannot render for them (the
    caller has checked it is one of the tenant's); None removes it."""
    tenant.default_template_version_id = template_version_id
    await session.flush()


async def set_delivery(
    *,
    session: AsyncSession,
    tenant: Tenant,
    providers: Sequence[str] | None,
    send_rate_per_s: float | None,
) -> None:
    """The tenant's providers in failover order and its sending rate; None: the defaults."""
    tenant.providers = list(providers) if providers is not None else None
    tenant.send_rate_per_s = send_rate_per_s
    session.add(tenant)
    await session.flush()


async def update_settings(
    *, session: AsyncSession, tenant: Tenant, values: Mapping[str, Any]
) -> None:
    """Write the named settings (checked by the caller: tailor/accounts/settings.py)."""
    for name, value in values.items():
        setattr(tenant, name, value)
    session.add(tenant)
    await session.flush()
