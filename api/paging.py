"""Keyset paging for every list route: the ``limit`` and ``cursor`` query parameters, the opaque
cursor, and the page built from one row more than was asked for.

A cursor is the sort key of the last item of a page (``tailor.store.keyset``) as JSON in
URL-safe base64: opaque to callers, and checked on the way back in, so a cursor that was not
ours answers 422 naming the parameter, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query

from api.schemas.base import Page
from tailor.errors import InvalidInput
from tailor.models.base import MAX_ROW_ID
from tailor.store.keyset import TimeKey

R = TypeVar("R")
T = TypeVar("T")

MAX_LIMIT = 200
_MAX_CURSOR = 500

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page, 1 to 200.")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=_MAX_CURSOR,
        description="`next_cursor` from the previous page; omit for the first.",
    ),
]

_BAD = "is not a cursor from this list: pass back `next_cursor` exactly, or omit it"


def _encode(key: list[Any]) -> str:
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> Any:
    if len(cursor) > _MAX_CURSOR:  # ours are short; a long one could nest deep enough to recurse
        raise InvalidInput("cursor", _BAD)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidInput("cursor", _BAD) from exc


def id_cursor(ident: int) -> str:
    return _encode([ident])


def time_cursor(at: datetime, ident: str) -> str:
    return _encode([at.isoformat(), ident])


def after_id(cursor: str | None) -> int | None:
    """The id a page ordered by id resumes after (None: the first page)."""
    if cursor is None:
        return None
    key = _decode(cursor)
    # bool is an int to Python; a cursor never holds one. Past MAX_ROW_ID no row has the id
    # (PostgreSQL would refuse to compare it with the INTEGER column: a 500, not a 422).
    if not (
        isinstance(key, list) and len(key) == 1 and type(key[0]) is int and 0 < key[0] <= MAX_ROW_ID
    ):
        raise InvalidInput("cursor", _BAD)
    ident: int = key[0]
    return ident


def after_time(cursor: str | None) -> TimeKey | None:
    """The (time, id) a page ordered by time resumes after (None: the first page)."""
    if cursor is None:
        return None
    key = _decode(cursor)
    if not (isinstance(key, list) and len(key) == 2 and all(isinstance(part, str) for part in key)):
        raise InvalidInput("cursor", _BAD)
    try:
        at = datetime.fromisoformat(key[0])
        if at.tzinfo is None:
            raise ValueError("no offset")
        at = at.astimezone(UTC)  # OverflowError at the ends of the calendar
    except (ValueError, OverflowError) as exc:
        raise InvalidInput("cursor", _BAD) from exc
    return TimeKey(at, key[1])


def page(
    rows: Sequence[R], *, limit: int, item: Callable[[R], T], cursor: Callable[[R], str]
) -> Page[T]:
    """The page of ``rows`` fetched with ``limit + 1``: the extra row, if it came, only says
    there is a next page; the cursor is the key of the last row shown."""
    shown = rows[:limit]
    more = len(rows) > limit
    return Page(items=[item(row) for row in shown], next_cursor=cursor(shown[-1]) if more else None)
