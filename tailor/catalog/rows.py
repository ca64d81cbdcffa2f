"""Catalog uploads, parsed and validated in full before anything is written: a JSON array of
products or a CSV file become ``ProductRow`` values, or one ``InvalidRows`` naming every problem.

Both forms have the same five fields:

    sku       letters, digits, ``.``, ``_`` and ``-``; up to 64 characters; unique in the upload
    name      up to 200 characters
    category  up to 100 characters (what contacts' preferred categories are matched against)
    price     in the shop's currency units, like ``19.99``: at most two decimals, no currency
              sign or thousands separator, 0 to 1,000,000 (a JSON number or string)
    url       an absolute http(s) URL, up to 500 characters

A CSV file is UTF-8 (a byte-order mark is allowed), comma-separated, with a header line naming
the five columns in any order. Rows are numbered from 1, counting the data lines after the
header (a blank line still counts, so row N is line N + 1 of a file without quoted line
breaks); JSON rows are numbered the same way, from 1 for the first element. A problem's field
is ``rows[N].<field>`` (``rows[N]`` for the row as a whole; ``file`` or ``header`` for the file).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from tailor.errors import InvalidRows

COLUMNS = ("sku", "name", "category", "price", "url")
MAX_ROWS = 10_000
#: Problems listed in one answer; the message still counts them all.
MAX_LISTED = 100
MAX_PRICE = Decimal(1_000_000)
_CENT = Decimal("0.01")
_SKU = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LENGTHS = {"name": 200, "category": 100, "url": 500}


@dataclass(frozen=True)
class ProductRow:
    sku: str
    name: str
    category: str
    price_cents: int
    url: str

    def values(self) -> dict[str, object]:
        """The store's columns (``tailor.store.catalog.PRODUCT_FIELDS``)."""
        return asdict(self)


class _Problems:
    """Problems found so far, each as (field, message) with the row in the field."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def add(self, row: int | None, field: str | None, message: str) -> None:
        where = f"rows[{row}]" if row is not None else ""
        if field is not None:
            where = f"{where}.{field}" if where else field
        self.found.append((where, message))

    def raise_any(self) -> None:
        if self.found:
            raise InvalidRows(self.found[:MAX_LISTED], total=len(self.found))


def _text(value: object, field: str, problems: _Problems, row: int) -> str | None:
    if not isinstance(value, str):
        problems.add(row, field, "must be a string")
        return None
    text = value.strip()
    if not text:
        problems.add(row, field, "is required")
        return None
    if _CONTROL.search(text):
        problems.add(row, field, "must not hold control characters or line breaks")
        return None
    limit = _LENGTHS.get(field)
    if limit is not None and len(text) > limit:
        problems.add(row, field, f"is {len(text)} characters long; at most {limit} are allowed")
        return None
    return text


def _sku(value: object, problems: _Problems, row: int) -> str | None:
    text = _text(value, "sku", problems, row)
    if text is not None and not _SKU.fullmatch(text):
        problems.add(
            row, "sku", "must be 1 to 64 letters, digits, '.', '_' or '-' (no spaces or '/')"
        )
        return None
    return text


def _price_cents(value: object, problems: _Problems, row: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        problems.add(row, "price", "must be a number like 19.99")
        return None
    text = str(value).strip()  # str(19.99) is "19.99": a JSON float keeps its written digits
    if not text:
        problems.add(row, "price", "is required")
        return None
    try:
        price = Decimal(text)
    except InvalidOperation:
        problems.add(
            row, "price", "must be a number like 19.99, without a currency sign or separators"
        )
        return None
    if not price.is_finite() or price < 0 or price > MAX_PRICE:
        problems.add(row, "price", f"must be between 0 and {MAX_PRICE:,}")
        return None
    if price != price.quantize(_CENT):
        problems.add(row, "price", "must have at most two decimals")
        return None
    return int(price * 100)


def _url(value: object, problems: _Problems, row: int) -> str | None:
    text = _text(value, "url", problems, row)
    if text is None:
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        problems.add(row, "url", "must be an absolute http:// or https:// URL")
        return None
    if " " in text:
        problems.add(row, "url", "must not hold spaces (encode them as %20)")
        return None
    return text


def _row(fields: Mapping[str, object], problems: _Problems, row: int) -> ProductRow | None:
    sku = _sku(fields.get("sku"), problems, row)
    name = _text(fields.get("name"), "name", problems, row)
    category = _text(fields.get("category"), "category", problems, row)
    price_cents = _price_cents(fields.get("price"), problems, row)
    url = _url(fields.get("url"), problems, row)
    if sku is None or name is None or category is None or price_cents is None or url is None:
        return None
    return ProductRow(sku, name, category, price_cents, url)


def _checked(rows: list[tuple[int, ProductRow | None]], problems: _Problems) -> list[ProductRow]:
    """The rows, once every problem is known, duplicates included; else InvalidRows."""
    first_row_of: dict[str, int] = {}
    for number, row in rows:
        if row is None:
            continue
        first = first_row_of.setdefault(row.sku, number)
        if first != number:
            problems.add(number, "sku", f"{row.sku!r} is already in row {first}")
    if not rows and not problems.found:
        problems.add(None, "rows", "the upload holds no products")
    problems.raise_any()
    return [row for _, row in rows if row is not None]


def rows_from_json(items: Sequence[object]) -> list[ProductRow]:
    """Products given as JSON objects with the five fields; InvalidRows unless all are valid."""
    if len(items) > MAX_ROWS:
        raise InvalidRows([("rows", f"has more than {MAX_ROWS:,} products; split it")])
    problems = _Problems()
    rows: list[tuple[int, ProductRow | None]] = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            problems.add(number, None, "must be an object with " + ", ".join(COLUMNS))
            rows.append((number, None))
            continue
        for unknown in sorted(set(item) - set(COLUMNS)):
            problems.add(number, str(unknown), "is not a product field")
        rows.append((number, _row(item, problems, number)))
    return _checked(rows, problems)


def rows_from_csv(data: bytes) -> list[ProductRow]:
    """Products from a CSV file's bytes; InvalidRows unless the file and all its rows are
    valid (a wrong encoding, a broken quote or a missing column reject it whole)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRows(
            [("file", f"is not UTF-8 text (byte {exc.start}); save it as 'CSV UTF-8'")]
        ) from exc
    problems = _Problems()
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, ProductRow | None]] = []
    try:
        header = _header(next(reader, None), problems)
        problems.raise_any()
        for number, record in enumerate(reader, start=1):
            if not any(cell.strip() for cell in record):
                continue  # a blank line, or one of empty cells as spreadsheets export
            if len(rows) == MAX_ROWS:
                raise InvalidRows([("file", f"has more than {MAX_ROWS:,} products; split it")])
            if len(record) != len(header):
                problems.add(
                    number, None, f"has {len(record)} values; the header has {len(header)}"
                )
                rows.append((number, None))
                continue
            rows.append((number, _row(dict(zip(header, record, strict=True)), problems, number)))
    except csv.Error as exc:
        # Row problems found before a broken quote would only distract from it.
        raise InvalidRows(
            [("file", f"is not valid CSV near line {reader.line_num}: {exc}")]
        ) from exc
    return _checked(rows, problems)


def _header(record: list[str] | None, problems: _Problems) -> list[str]:
    expected = ",".join(COLUMNS)
    if record is None:
        problems.add(None, "file", f"is empty; its first line must be the header {expected}")
        return []
    header = [cell.strip().lower() for cell in record]
    missing = [c for c in COLUMNS if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    doubled = sorted({c for c in header if header.count(c) > 1})
    if missing:
        problems.add(None, "header", f"misses {', '.join(missing)}; expected {expected}")
    if unknown:
        problems.add(None, "header", f"has unknown columns {', '.join(map(repr, unknown))}")
    if doubled:
        problems.add(None, "header", f"names {', '.join(doubled)} more than once")
    return header
