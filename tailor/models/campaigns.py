"""Campaigns, their sends (one per campaign, contact and occurrence) and engagement."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from pydantic import Field as Spec
from sqlmodel import Field, SQLModel

from tailor.models.base import UTCDateTime, json_field, utcnow

DEFAULT_PROMPT = "personalization_v3"  # a campaign's, unless it names another prompt


class CampaignStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its start time
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class CampaignKind(StrEnum):
    BATCH = "batch"  # one CampaignWorkflow sends it to a segment
    AB_CELL = "ab_cell"  # one variant's test cell, or the winner's rollout, of an A/B test
    JOURNEY = "journey"  # one email of a journey definition: journeys send it, one person at a time


class SendStatus(StrEnum):
    PENDING = "pending"  # nothing accepted by a provider yet: safe to (re)send
    DISPATCHED = "dispatched"  # committed just before the provider could accept: never resent
    SENT = "sent"  # the provider accepted it
    SUPPRESSED = "suppressed"  # no consent at send time
    FAILED = "failed"  # the provider refused it permanently
    HELD = "held"  # its cluster's content awaits human review; nothing was sent
    HELD_OUT = "held_out"  # in the campaign's control group: deliberately not sent


class HoldoutTreatment(StrEnum):
    NONE = "none"  # the control group is not mailed
    PLAIN = "plain"  # it gets the template without AI personalisation: the rules tier


class Generator(StrEnum):
    """Who may write a campaign's emails."""

    AUTO = "auto"  # the LLM tiers where configured, the rules tier otherwise
    RULES = "rules"  # the rules tier only: the "plain" arm of an AI vs plain test


MAX_HOLDOUT_FRACTION = 0.5


class Holdout(BaseModel):
    """A campaign's or journey's control group as its author states it; the campaign row keeps
    it as ``holdout_fraction`` and ``holdout_treatment``. Membership: ``tailor.holdout``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fraction: float = Spec(
        ge=0.0001,  # one bucket in 10,000: anything smaller would be an empty control group
        le=MAX_HOLDOUT_FRACTION,
        description="Share of the audience kept as a control group, 0.0001 to 0.5 (0.05: 5%).",
    )
    treatment: HoldoutTreatment = Spec(
        HoldoutTreatment.NONE,
        description="none: the control group is not mailed; plain: it gets the template "
        "without AI personalisation (the rules tier).",
    )


class Campaign(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    name: str = Field(max_length=200)
    template_version_id: int = Field(foreign_key="template_version.id")
    prompt_version: str = Field(default=DEFAULT_PROMPT, max_length=64)
    segment: dict[str, Any] = json_field(dict)
    kind: str = Field(default=CampaignKind.BATCH, max_length=16)
    goal: str | None = Field(default=None, max_length=64, description="A journey email's goal.")
    send_time: str = Field(
        default="now",
        max_length=16,
        description="now; best_hour: each recipient's hour; HH:00: that hour, recipient-local.",
    )
    start_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, nullable=True, description="Scheduled start."
    )
    status: str = Field(default=CampaignStatus.RUNNING, max_length=16, index=True)
    workflow_id: str = Field(max_length=200)
    tracking_enabled: bool = Field(
        default=True, description="Off: no pixel or tracked links, whatever the tenant's setting."
    )
    holdout_fraction: float = Field(
        default=0.0, ge=0, le=0.5, description="Share of the audience kept as a control group."
    )
    holdout_treatment: str = Field(
        default="none", max_length=8, description="none: the control is not mailed; plain: it "
        "gets the template without AI personalisation (the rules tier).",
    )  # fmt: skip
    generator: str = Field(
        default=Generator.AUTO, max_length=8,
        description="auto: LLM tiers, then rules; rules: the rules tier only.",
    )  # fmt: skip
    paused_reason: str | None = Field(
        default=None, max_length=300, description="Why it was paused, e.g. a complaint rate."
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class Send(SQLModel, table=True):
    """One row per campaign x contact x occurrence: the idempotency key of delivery. A batch
    campaign has one occurrence (""); a journey email one per journey run."""

    __table_args__ = (
        sa.UniqueConstraint(
            "campaign_id", "contact_id", "occurrence", name="uq_send_campaign_contact_occurrence"
        ),
        sa.Index("ix_send_campaign_status", "campaign_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(foreign_key="campaign.id", max_length=64)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    occurrence: str = Field(default="", max_length=64)
    status: str = Field(default=SendStatus.PENDING, max_length=16)
    message_id: str = Field(max_length=300, description="RFC 5322 Message-ID, deterministic.")
    provider: str | None = Field(default=None, max_length=32)
    generator: str | None = Field(default=None, max_length=32, description="rules, openai, ...")
    explain: dict[str, Any] | None = Field(
        default=None, sa_type=sa.JSON, nullable=True, description="Why this email: no PII."
    )
    provider_message_id: str | None = Field(default=None, max_length=300)
    review_id: int | None = Field(
        default=None, foreign_key="review_item.id", description="Held for this review."
    )
    error: str | None = Field(default=None, max_length=1000)
    # The URLs Tailor put in the email, in order: a click redirect goes only to one of these.
    links: list[str] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    # The furthest a provider has reported it (tailor.delivery.webhooks.events.advance).
    esp_state: str | None = Field(default=None, max_length=16)
    control: bool = Field(default=False, description="In the campaign's holdout group.")
    attempts: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    dispatched_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class Engagement(SQLModel, table=True):
    """The first open, click or conversion of one send: what A/B decisions count. Tracking
    (pixels, provider webhooks) reports here; a repeat of the same kind changes nothing."""

    __table_args__ = (
        sa.UniqueConstraint("send_id", "metric", name="uq_engagement_send_metric"),
        sa.Index("ix_engagement_campaign_metric", "campaign_id", "metric"),
        sa.Index("ix_engagement_contact", "contact_id", "metric", "occurred_at"),  # last touch
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64)
    campaign_id: str = Field(foreign_key="campaign.id", max_length=64)
    send_id: int = Field(foreign_key="send.id")
    contact_id: int = Field(foreign_key="contact.id")
    metric: str = Field(max_length=16, description="open, click or conversion")
    occurred_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
