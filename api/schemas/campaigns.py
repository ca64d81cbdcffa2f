"""Batch campaigns: the request that starts one, and what it reports while it runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from api.schemas.base import RowIdField, Strict
from tailor.models import Generator, Holdout
from tailor.personalise.prompts import DEFAULT_PROMPT, PROMPTS
from tailor.store.segments import Segment


class CampaignIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    template_version_id: RowIdField
    segment: Segment = Field(default_factory=Segment)
    prompt_version: str = Field(
        DEFAULT_PROMPT, description=f"LLM prompt version, one of {sorted(PROMPTS)}"
    )
    send_time: str = Field(
        "now",
        pattern=r"^(now|best_hour|([01][0-9]|2[0-3]):00)$",
        description='now; "09:00": at that hour in each recipient\'s own timezone over the '
        "next 24 hours; best_hour: each recipient gets it at their best local hour over the next "
        "24 hours (learned from their opens; 10:00 local without history).",
    )

    start_at: AwareDatetime | None = Field(
        None, description="Start later (ISO 8601 with an offset); the campaign waits durably."
    )
    tracking: bool = Field(
        True,
        description="Open pixel and tracked links, when the tenant's tracking is on too; false "
        "sends this campaign's emails with direct links and no pixel.",
    )
    holdout: Holdout | None = Field(
        None,
        description="A random, deterministic control group to measure lift against, e.g. "
        '{"fraction": 0.05, "treatment": "none"}: 5% of the audience is not mailed ("plain": '
        "it gets the template without AI personalisation).",
    )
    generator: Generator = Field(
        Generator.AUTO,
        description="auto: the LLM tiers where configured, then rules; rules: the rules tier "
        "writes every email.",
    )

    @model_validator(mode="after")
    def _known_prompt(self) -> CampaignIn:
        if self.prompt_version not in PROMPTS:
            raise ValueError(f"prompt_version must be one of {sorted(PROMPTS)}")
        return self

    @field_validator("start_at")
    @classmethod
    def _within_a_year(cls, value: datetime | None) -> datetime | None:
        if value is not None and value - datetime.now(UTC) > timedelta(days=366):
            raise ValueError("start_at must be within a year")
        return value


class CampaignStarted(BaseModel):
    id: str
    status: str
    workflow_id: str
    status_url: str
    temporal_ui_url: str


class CampaignPublic(BaseModel):
    id: str
    name: str
    status: str
    template_version_id: int
    segment: dict[str, Any]
    kind: str = "batch"
    start_at: datetime | None = None
    created_at: datetime
    completed_at: datetime | None
    holdout: Holdout | None = Field(None, description="Its control group, if it keeps one.")
    generator: str = Field("auto", description="auto: LLM tiers, then rules; rules: rules only.")
    counts: dict[str, int] = Field(description="Sends by status, from the sends table.")
    generation: dict[str, Any] = Field(
        description="Emails by generator (rules, openai, anthropic), LLM calls, cache hits, cost."
    )
    progress: dict[str, Any] | None = Field(
        None, description="Live workflow progress (query), while it runs."
    )
    temporal_ui_url: str


class CampaignListItem(BaseModel):
    """A campaign in ``GET /v1/campaigns``: ``GET /v1/campaigns/{id}`` has its counts."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    kind: str
    status: str
    template_version_id: int
    start_at: datetime | None
    created_at: datetime
    completed_at: datetime | None
