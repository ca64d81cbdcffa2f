"""A tenant's product catalog."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from tailor.models import Product


async def products_of(*, session: AsyncSession, tenant_id: str) -> list[Product]:
    rows = await session.execute(select(Product).where(col(Product.tenant_id) == tenant_id))
    return list(rows.scalars())


async def add_missing_products(
    *, session: AsyncSession, tenant_id: str, products: Iterable[Product]
) -> int:
    """Add the products whose SKU the tenant does not have yet; returns how many."""
    have = {p.sku for p in await products_of(session=session, tenant_id=tenant_id)}
    added = 0
    for product in products:
        if product.sku not in have:
            session.add(product)
            added += 1
    return added
