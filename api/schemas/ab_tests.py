"""A/B tests: variant cells, the manual winner, and the started test."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.schemas.base import RowIdField, Strict
from tailor.models import Generator
from tailor.store.segments import Segment


class AbVariantIn(Strict):
    key: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    template_version_id: RowIdField
    generator: Generator = Field(
        Generator.AUTO,
        description="auto: the LLM tiers where configured, then rules; rules: this variant's "
        "emails are the plain template (the rules tier only).",
    )


class AbTestIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    segment: Segment = Field(default_factory=Segment)
    variants: list[AbVariantIn] = Field(
        default_factory=list, max_length=8, description="Two to eight (or ai_vs_plain)."
    )
    ai_vs_plain: bool = Field(
        False,
        description="Test the LLM tiers against the plain template: two variants of "
        "template_version_id, ai (generator auto) and plain (generator rules), instead of "
        "variants.",
    )
    template_version_id: RowIdField | None = Field(None, description="With ai_vs_plain only.")
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
        if self.ai_vs_plain:
            if self.variants:
                raise ValueError("ai_vs_plain makes the variants: give template_version_id only")
            if self.template_version_id is None:
                raise ValueError("ai_vs_plain needs template_version_id")
        elif self.template_version_id is not None:
            raise ValueError("template_version_id goes with ai_vs_plain; otherwise in variants")
        elif len(self.variants) < 2:
            raise ValueError("variants: an A/B test needs at least 2 (or ai_vs_plain)")
        keys = [v.key for v in self.cells()]
        if len(set(keys)) != len(keys):
            raise ValueError("variant keys must be unique")
        if self.default_variant is not None and self.default_variant not in keys:
            raise ValueError(f"default_variant must be one of {keys}")
        return self

    def cells(self) -> list[AbVariantIn]:
        """The variants, or for ai_vs_plain its two, ai first (so the default when the test is
        inconclusive, unless default_variant says "plain")."""
        if not self.ai_vs_plain or self.template_version_id is None:
            return list(self.variants)
        version = self.template_version_id
        return [
            AbVariantIn(key="ai", template_version_id=version, generator=Generator.AUTO),
            AbVariantIn(key="plain", template_version_id=version, generator=Generator.RULES),
        ]


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
