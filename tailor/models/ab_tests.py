"""A/B tests."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tailor.models.base import UTCDateTime, json_field, utcnow


class AbTestStatus(StrEnum):
    TESTING = "testing"  # the test cells are sending, or the window is open
    ROLLING_OUT = "rolling_out"  # the winner goes to the rest of the audience
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class AbTest(SQLModel, table=True):
    """An A/B test: variant cells, a decision, then the winner rolled out. Each cell and the
    rollout is a campaign (kind ab_cell) over a deterministic slice of the segment."""

    __tablename__ = "ab_test"

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    name: str = Field(max_length=200)
    segment: dict[str, Any] = json_field(dict)
    metric: str = Field(max_length=16, description="open, click or conversion")
    test_fraction: float = Field(gt=0, lt=1)
    threshold: float = Field(description="Probability to beat all that declares a winner.")
    min_sent_per_variant: int = Field(ge=1)
    window_s: int = Field(ge=1)
    default_variant: str = Field(max_length=16)
    # key, template_version_id, generator (auto, rules; absent before it existed), campaign_id
    variants: list[dict[str, Any]] = json_field()
    status: str = Field(default=AbTestStatus.TESTING, max_length=16, index=True)
    winner: str | None = Field(default=None, max_length=16)
    decision: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    rollout_campaign_id: str | None = Field(default=None, max_length=64)
    workflow_id: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)

    def baseline(self) -> dict[str, Any]:
        """The variant lift is measured against: the plain one (generator rules) of an AI vs
        plain test, else the default variant."""
        plain = [v for v in self.variants if v.get("generator") == "rules"]
        if len(plain) == 1:
            return plain[0]
        return next(v for v in self.variants if v["key"] == self.default_variant)
