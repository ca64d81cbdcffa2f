"""The tenant's product catalog: bulk upsert by SKU (JSON or a CSV file), keyset pages, and
removal. An upload is validated in full first: one wrong row and nothing is applied."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response

from api.deps import SessionDep, TenantDep
from api.openapi import problems
from api.paging import Cursor, Limit, after_id, id_cursor, page
from api.schemas.base import Page
from api.schemas.catalog import ProductPublic, ProductsIn, ProductsUpserted
from tailor.catalog.rows import COLUMNS, ProductRow, rows_from_csv, rows_from_json
from tailor.models import Product, utcnow
from tailor.store.catalog import product_page, remove_product, upsert_products

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/products", tags=["catalog"])
# As products are upserted (api/schemas/catalog.py): the SKU column holds 64 characters.
Sku = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]

#: A full CSV upload (10,000 rows of the longest fields) fits with room to spare.
MAX_CSV_BYTES = 10 * 1024 * 1024
_CSV_TYPES = frozenset({"text/csv", "application/csv"})


async def _upsert(session: SessionDep, tenant_id: str, rows: list[ProductRow]) -> ProductsUpserted:
    counts = await upsert_products(
        session=session, tenant_id=tenant_id, products=[r.values() for r in rows]
    )
    log.info(
        "catalog upsert tenant=%s created=%d updated=%d unchanged=%d",
        tenant_id, counts.created, counts.updated, counts.unchanged,
    )  # fmt: skip
    return ProductsUpserted(
        count=len(rows), created=counts.created, updated=counts.updated, unchanged=counts.unchanged
    )


@router.post("", response_model=ProductsUpserted)
async def upsert(body: ProductsIn, session: SessionDep, tenant: TenantDep) -> ProductsUpserted:
    """Insert new SKUs and update named ones (a removed SKU comes back), up to 10,000 at once,
    all or nothing. Prices are in the shop's currency units (`19.99`)."""
    return await _upsert(session, tenant.id, rows_from_json(body.products))


async def _csv_body(request: Request) -> bytes:
    media_type, _, params = request.headers.get("content-type", "").partition(";")
    if media_type.strip().lower() not in _CSV_TYPES:
        raise HTTPException(415, "send the file with Content-Type: text/csv")
    charset = params.strip().lower().removeprefix("charset=").strip('"')
    if params.strip() and charset not in ("utf-8", "utf8"):
        raise HTTPException(415, "the CSV must be UTF-8 (Content-Type: text/csv; charset=utf-8)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CSV_BYTES:
            raise HTTPException(
                413, f"the CSV is larger than {MAX_CSV_BYTES // (1024 * 1024)} MiB; split it"
            )
    return bytes(body)


@router.post(
    "/csv",
    response_model=ProductsUpserted,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": f"{','.join(COLUMNS)}\nTEE-101,Linen tee,tops,19.99,"
                    "https://shop.example.com/p/TEE-101\n",
                }
            },
        }
    },
    responses=problems(415),
)
async def upload_csv(request: Request, session: SessionDep, tenant: TenantDep) -> ProductsUpserted:
    """A CSV file (UTF-8, header `sku,name,category,price,url` in any order, price like `19.99`)
    upserted as `POST /v1/products` does, up to 10,000 rows, all or nothing. Problems name the
    row, counting data lines from 1 after the header: `rows[3].price`."""
    return await _upsert(session, tenant.id, rows_from_csv(await _csv_body(request)))


def _public(product: Product) -> ProductPublic:
    return ProductPublic(
        sku=product.sku,
        name=product.name,
        category=product.category,
        price=f"{product.price_cents // 100}.{product.price_cents % 100:02d}",
        url=product.url,
    )


@router.get("", response_model=Page[ProductPublic])
async def list_products(
    session: SessionDep, tenant: TenantDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[ProductPublic]:
    """The products on sale (removed ones are left out), newest first, a page at a time."""
    rows = await product_page(
        session=session, tenant_id=tenant.id, after=after_id(cursor), limit=limit + 1
    )
    return page(rows, limit=limit, item=_public, cursor=lambda p: id_cursor(p.id or 0))


@router.delete("/{sku}", status_code=204, response_class=Response)
async def remove(sku: Sku, session: SessionDep, tenant: TenantDep) -> Response:
    """Take a product off sale: it is no longer listed, recommended or accepted as a price in
    generated copy. Its row stays, as past emails name it; upserting its SKU brings it back."""
    await remove_product(session=session, tenant_id=tenant.id, sku=sku, now=utcnow())
    return Response(status_code=204)
