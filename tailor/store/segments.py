"""Campaign audiences as SQL filters over contact columns."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import ColumnElement, and_, false, func, or_
from sqlmodel import col

from tailor.models import Contact
from tailor.send_time import DEFAULT_HOUR, zone

# A contact's A/B bucket: a fixed multiplicative hash of its id, so a slice is a plain SQL
# filter on every backend, and the same contact always lands in the same cell of a test.
BUCKETS = 10_000
_HASH_MULTIPLIER = 2_654_435_761  # Knuth's: consecutive ids spread over all buckets


class Slice(BaseModel):
    """Contacts whose bucket for ``salt`` is in [start, end): one A/B cell, or the rest."""

    model_config = ConfigDict(extra="forbid")

    salt: int = Field(ge=0, lt=BUCKETS)
    start: int = Field(ge=0, le=BUCKETS)
    end: int = Field(ge=0, le=BUCKETS)


def bucket_of(contact_id: int, salt: int) -> int:
    return (contact_id * _HASH_MULTIPLIER + salt) % BUCKETS


class Segment(BaseModel):
    """Who a campaign reaches. Every filter is optional; an empty segment is the whole tenant."""

    model_config = ConfigDict(extra="forbid")

    engagement_min: int | None = Field(None, ge=0, le=100)
    engagement_max: int | None = Field(None, ge=0, le=100)
    devices: list[str] | None = Field(None, description="mobile, desktop, tablet")
    timezones: list[str] | None = None
    sample: Slice | None = Field(None, description="Set by A/B tests: one cell's slice.")

    @model_validator(mode="after")
    def _range(self) -> Segment:
        if (
            self.engagement_min is not None
            and self.engagement_max is not None
            and self.engagement_min > self.engagement_max
        ):
            raise ValueError("engagement_min must not exceed engagement_max")
        return self


def due_filter(
    timezones: Iterable[str], at: datetime, fixed_hour: int | None = None
) -> ColumnElement[bool]:
    """Contacts whose best local hour (``DEFAULT_HOUR`` without one), or ``fixed_hour`` for
    everyone, is the hour ``at`` falls in, in their own timezone: one clause per local hour,
    over the tenant's timezones."""
    by_hour: dict[int, list[str]] = defaultdict(list)
    for name in timezones:
        by_hour[at.astimezone(zone(name)).hour].append(name)
    if fixed_hour is not None:
        names = by_hour.get(fixed_hour)
        return col(Contact.timezone).in_(names) if names else false()
    hour = func.coalesce(col(Contact.best_send_hour), DEFAULT_HOUR)
    return or_(
        false(),
        *(and_(col(Contact.timezone).in_(names), hour == h) for h, names in by_hour.items()),
    )


def segment_filter(tenant_id: str, segment: dict[str, Any]) -> ColumnElement[bool]:
    seg = Segment.model_validate(segment)
    clauses: list[ColumnElement[bool]] = [col(Contact.tenant_id) == tenant_id]
    if seg.engagement_min is not None:
        clauses.append(col(Contact.engagement_score) >= seg.engagement_min)
    if seg.engagement_max is not None:
        clauses.append(col(Contact.engagement_score) <= seg.engagement_max)
    if seg.devices:
        clauses.append(col(Contact.device).in_(seg.devices))
    if seg.timezones:
        clauses.append(col(Contact.timezone).in_(seg.timezones))
    if seg.sample is not None:
        bucket = (col(Contact.id) * _HASH_MULTIPLIER + seg.sample.salt) % BUCKETS
        clauses.append(and_(bucket >= seg.sample.start, bucket < seg.sample.end))
    return and_(*clauses)
