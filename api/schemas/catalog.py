"""The product catalog: bulk upserts (JSON or CSV), pages of products, removal.

Rows are validated by ``tailor.catalog.rows`` rather than here, so that a JSON upload and a CSV
file report problems the same way (``rows[3].price``, rows counted from 1); the item schema
below documents the row for the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema

from api.schemas.base import Strict
from tailor.catalog.rows import MAX_ROWS

# Not blank, no control characters or line breaks (surrounding spaces are trimmed).
_PRINTABLE = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
PRODUCT_ROW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "ProductIn",
    "additionalProperties": False,
    "required": ["sku", "name", "category", "price", "url"],
    "properties": {
        "sku": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$", "examples": ["TEE-101"]},
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": _PRINTABLE},
        "category": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": _PRINTABLE},
        "price": {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 1_000_000, "multipleOf": 0.01},
                {"type": "string", "pattern": r"^\d+(\.\d{1,2})?$"},
            ],
            "description": "In the shop's currency units, at most two decimals: 19.99",
            "examples": ["19.99"],
        },
        "url": {
            "type": "string",
            "maxLength": 500,
            "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/]+\S*$",
        },
    },
}


class ProductsIn(Strict):
    products: list[Annotated[Any, WithJsonSchema(PRODUCT_ROW_SCHEMA)]] = Field(
        min_length=1,
        max_length=MAX_ROWS,
        description="Upserted by SKU, all or nothing. Problems name the row, counted from 1: "
        "`rows[3].price` is the third element's price.",
    )


class ProductsUpserted(BaseModel):
    count: int
    created: int
    updated: int = Field(description="Existing SKUs whose fields changed, or removed ones re-added")
    unchanged: int


class ProductPublic(BaseModel):
    sku: str
    name: str
    category: str
    price: str = Field(description="In the shop's currency units", examples=["19.99"])
    url: str
