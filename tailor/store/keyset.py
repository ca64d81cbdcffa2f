"""Keyset pages, newest first: where a page of a list starts, given the last row of the one before.

Every list the API serves is ordered newest first and resumed from the sort key of the last item
it returned, never by offset: a page costs the same at the end of a million rows as at the
start, and rows added meanwhile shift nothing (they sort before the first page). Tables with
integer ids use the id alone (ids grow with insertion); tables whose ids are random strings
(campaigns, A/B tests, journey runs) use the time they were created and the id as a tie-break.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, true


@dataclass(frozen=True)
class TimeKey:
    """Where a page ordered by (time, string id), newest first, resumes: strictly after this."""

    at: datetime
    id: str


def older_than(at: Any, ident: Any, key: TimeKey | None) -> ColumnElement[bool]:
    """Rows sorting after ``key`` in ``ORDER BY at DESC, ident DESC`` (every row without one)."""
    if key is None:
        return true()
    return or_(at < key.at, and_(at == key.at, ident < key.id))


def below(ident: Any, key: int | None) -> ColumnElement[bool]:
    """Rows sorting after ``key`` in ``ORDER BY id DESC`` (every row without one)."""
    return true() if key is None else ident < key
