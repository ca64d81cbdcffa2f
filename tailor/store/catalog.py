"""A tenant's product catalog: bulk upsert by SKU, removal, keyset pages, and the products
personalisation may recommend and price.

A removed product keeps its row (past sends and their "why this email" name it) with
``removed_at`` set; every read here but the upsert's own lookup leaves it out, so it is never
recommended, and its price is never accepted, again. Re-adding its SKU brings it back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from tailor.errors import NotFound
from tailor.models import Product
from tailor.store.keyset import below

#: The columns an upsert writes, besides the tenant and ``removed_at``.
PRODUCT_FIELDS = ("sku", "name", "category", "price_cents", "url")
# Rows per statement: well under SQLite's and PostgreSQL's bound-parameter limits.
_BATCH = 1000


@dataclass(frozen=True)
class UpsertedProducts:
    created: int
    updated: int  # an existing SKU whose fields changed, or a removed one added again
    unchanged: int


async def products_of(*, session: AsyncSession, tenant_id: str) -> list[Product]:
    """The tenant's products on sale (not removed): what recommendations and the evaluator's
    price check draw on."""
    rows = await session.execute(
        select(Product)
        .where(col(Product.tenant_id) == tenant_id, col(Product.removed_at).is_(None))
        .order_by(col(Product.id))
    )
    return list(rows.scalars())


async def _skus_of(session: AsyncSession, tenant_id: str) -> set[str]:
    """Every SKU the tenant has a row for, removed or not (the unique key spans both)."""
    rows = await session.execute(select(Product.sku).where(col(Product.tenant_id) == tenant_id))
    return set(rows.scalars())


async def add_missing_products(
    *, session: AsyncSession, tenant_id: str, products: Iterable[Product]
) -> int:
    """Add the products whose SKU the tenant does not have yet (a removed one stays removed);
    returns how many."""
    have = await _skus_of(session, tenant_id)
    added = 0
    for product in products:
        if product.sku not in have:
            session.add(product)
            added += 1
    return added


async def upsert_products(
    *, session: AsyncSession, tenant_id: str, products: Sequence[Mapping[str, object]]
) -> UpsertedProducts:
    """Insert new SKUs, update the named existing ones, and bring back removed ones, in the
    caller's transaction. ``products`` hold ``PRODUCT_FIELDS`` with unique SKUs.

    The write is an INSERT ... ON CONFLICT DO UPDATE, so two uploads naming one new SKU at once
    both succeed (the later wins) instead of one failing on the unique key; the counts come
    from the lookup before it.
    """
    current: dict[str, tuple[object, ...]] = {}
    skus = [str(p["sku"]) for p in products]
    for start in range(0, len(skus), _BATCH):
        rows = await session.execute(
            select(  # type: ignore[call-overload]
                *(col(getattr(Product, f)) for f in PRODUCT_FIELDS), col(Product.removed_at)
            ).where(
                col(Product.tenant_id) == tenant_id,
                col(Product.sku).in_(skus[start : start + _BATCH]),
            )
        )
        for row in rows.all():
            current[row[0]] = tuple(row)
    created = updated = 0
    writes: list[dict[str, object]] = []
    for product in products:
        values = tuple(product[f] for f in PRODUCT_FIELDS)
        found = current.get(str(product["sku"]))
        if found is None:
            created += 1
        elif found != (*values, None):
            updated += 1
        else:
            continue
        writes.append({"tenant_id": tenant_id, **dict(zip(PRODUCT_FIELDS, values, strict=True))})
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Product)
    statement = statement.on_conflict_do_update(
        index_elements=["tenant_id", "sku"],
        set_={
            **{f: statement.excluded[f] for f in PRODUCT_FIELDS if f != "sku"},
            "removed_at": None,
        },
    )
    for start in range(0, len(writes), _BATCH):
        await session.execute(statement, writes[start : start + _BATCH])
    return UpsertedProducts(created, updated, len(products) - created - updated)


async def product_page(
    *, session: AsyncSession, tenant_id: str, after: int | None, limit: int
) -> list[Product]:
    """A keyset page of the products on sale, newest first (``tailor.store.keyset``), steady
    while products are added or removed between pages."""
    rows = await session.execute(
        select(Product)
        .where(
            col(Product.tenant_id) == tenant_id,
            col(Product.removed_at).is_(None),
            below(col(Product.id), after),
        )
        .order_by(col(Product.id).desc())
        .limit(limit)
    )
    return list(rows.scalars())


async def remove_product(*, session: AsyncSession, tenant_id: str, sku: str, now: datetime) -> None:
    """Mark the product removed (the row stays). NotFound if the tenant has no such product on
    sale, including one already removed."""
    result = await session.execute(
        update(Product)
        .where(
            col(Product.tenant_id) == tenant_id,
            col(Product.sku) == sku,
            col(Product.removed_at).is_(None),
        )
        .values(removed_at=now)
    )
    if not getattr(result, "rowcount", 0):
        raise NotFound("product", sku)
