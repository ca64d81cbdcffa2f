"""What every schema shares: requests refuse unknown fields, and every list answers one page."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first. Ask for the next with ``?cursor=<next_cursor>`` (and
    the same filters); ``next_cursor`` is null on the last page."""

    items: list[T]
    next_cursor: str | None = Field(
        description="Opaque: pass it back as `cursor` for the next page; null when no more."
    )
