"""A tenant's product catalog."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from tailor.models import Product


async def list_products(*, session: AsyncSession, tenant_id: str) -> list[Product]:
    """Every product of the tenant, as table models: ``Catalog`` indexes them."""
    rows = await session.execute(select(Product).where(col(Product.tenant_id) == tenant_id))
    return list(rows.scalars())
