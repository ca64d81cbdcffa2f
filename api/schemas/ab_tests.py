"""A/B tests: variant cells, the manual winner, and the started test."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.schemas.base import RowIdField, Strict
from tailor.store.segments import Segment


class AbVariantIn(Strict):
    key: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    template_version_id: RowIdField


class AbTestIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    segment: Segment = Field(default_factory=Segment)
    variants: list[AbVariantIn] = Field(min_length=2, max_length=8)
    metric: Literal["open", "click", "conversion"] = "click"
    test_fraction: float = Field(
        0.1, gt=0, le=0.5, description="Share of the audience in the test cells, split evenly."
    )
    threshold: float = Field(
        0.95, ge=0.8, lt=1, description="Probability to beat all that declares a winner."
    )
    min_sent_per_variant: int = Field(200, ge=1, le=10_000_000)
    window_hours: float = Field(24, gt=0, le=24 * 14, description="Engagement window.")
    default_variant: str | None = Field(
        None, description="Sent when the test is inconclusive; default: the first variant."
    )

    @model_validator(mode="after")
    def _variants(self) -> AbTestIn:
        keys = [v.key for v in self.variants]
        if len(set(keys)) != len(keys):
            raise ValueError("variant keys must be unique")
        if self.default_variant is not None and self.default_variant not in keys:
            raise ValueError(f"default_variant must be one of {keys}")
        return self


class AbTestStarted(BaseModel):
    id: str
    status: str
    workflow_id: str
    cell_campaign_ids: dict[str, str]
    status_url: str
    temporal_ui_url: str


class AbWinnerIn(Strict):
    variant: str = Field(min_length=1, max_length=16)


class AbTestListItem(BaseModel):
    """An A/B test in ``GET /v1/ab-tests``: ``GET /v1/ab-tests/{id}`` has cells and counts."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    status: str
    metric: str
    variants: list[str] = Field(description="The variants' keys.")
    winner: str | None
    created_at: datetime
    decided_at: datetime | None
