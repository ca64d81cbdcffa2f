"""The bases schemas share: requests refuse unknown fields, and lists come a page at a time."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """One page of a list. Pass ``next_cursor`` back as ``cursor`` for the next page; it is
    null on the last one."""

    items: list[T]
    next_cursor: str | None = Field(description="Opaque; null on the last page.")
    limit: int
