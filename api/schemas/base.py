"""The bases schemas share: requests refuse unknown fields, lists come a page at a time, ids are
bounded to ids a row can have, single-line text holds no line breaks or control characters, and
every error answers with one body (``Problem``)."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tailor.models.base import MAX_ROW_ID

__all__ = [
    "MAX_ROW_ID",
    "ONE_LINE_PATTERN",
    "TEXT_ID_PATTERN",
    "OneLine",
    "Page",
    "Problem",
    "ProblemDetail",
    "RowId",
    "RowIdField",
    "Strict",
    "TextId",
]

T = TypeVar("T")


class Strict(BaseModel):
    # Infinity and NaN are not numbers any column or rate can hold.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first. Ask for the next with ``?cursor=<next_cursor>`` (and
    the same filters); ``next_cursor`` is null on the last page."""

    items: list[T]
    next_cursor: str | None = Field(
        description="Opaque: pass it back as `cursor` for the next page; null when no more."
    )


#: An integer id in a path: anything no row can have (0, negative, past the column's range)
#: answers 422 here, before the store sees it.
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A row id.")]
#: The same, in a request body.
RowIdField = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]
#: The alphabet Tailor mints text ids in (cmp_..., ab_..., jrn_..., ab-<test>-<variant>).
TEXT_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
#: A text id in a path (campaign, A/B test): at most the 64 characters of its column.
TextId = Annotated[str, Path(min_length=1, max_length=64, pattern=TEXT_ID_PATTERN)]


#: Text that may end up in an email header or a one-line display. Line breaks would start a
#: header of their own where the value lands in one (CRLF injection); other control characters
#: (C0, DEL, C1, Unicode line and paragraph separators) have no place in a name or subject
#: either. Format characters (RTL marks, emoji joiners) are text and stay. A pattern rather than
#: a validator: length limits on the field still say "characters", and OpenAPI shows it.
ONE_LINE_PATTERN = r"^[^\x00-\x1F\x7F-\x9F\u2028\u2029]*$"
OneLine = Annotated[str, StringConstraints(pattern=ONE_LINE_PATTERN)]


class ProblemDetail(BaseModel):
    """One thing wrong with the request: where (a dotted field path, or ``request``) and what."""

    field: str
    message: str


class Problem(BaseModel):
    """The body of every error answer (4xx, 5xx): a sentence for a person, and for invalid input
    (422) the fields at fault."""

    message: str
    detail: list[ProblemDetail] = Field(
        default_factory=list, description="Each field at fault (422 only)."
    )
