"""Table models. Request/response schemas live in ``api/schemas/``; payloads that cross Temporal
live in ``tailor/payloads.py``: neither is a table."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

DEFAULT_PROMPT = "personalization_v3"  # a campaign's, unless it names another prompt


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite keeps no offset, so we restore it)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _json(default_factory: Any = list) -> Any:
    return Field(default_factory=default_factory, sa_type=sa.JSON, nullable=False)


class ConsentStatus(StrEnum):
    GRANTED = "granted"
    REVOKED = "revoked"
    SUPPRESSED = "suppressed"  # a provider refused the address for good (hard bounce)


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


class JourneyStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # every step ran
    EXITED = "exited"  # an exit event (a purchase, an open) ended it early
    STOPPED = "stopped"  # consent revoked


class DeadLetterStatus(StrEnum):
    OPEN = "open"
    REPLAYED = "replayed"


class SendStatus(StrEnum):
    PENDING = "pending"  # nothing accepted by a provider yet: safe to (re)send
    DISPATCHED = "dispatched"  # committed just before the provider could accept: never resent
    SENT = "sent"  # the provider accepted it
    SUPPRESSED = "suppressed"  # no consent at send time
    FAILED = "failed"  # the provider refused it permanently
    HELD = "held"  # its cluster's content awaits human review; nothing was sent


class ReviewStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # send the (possibly edited) content
    REJECTED = "rejected"  # send the rules-tier email instead
    EXPIRED = "expired"  # nobody decided in time (or the campaign ended): rules-tier email


class Tenant(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    from_email: str = Field(max_length=320)
    from_name: str = Field(max_length=200)
    postal_address: str = Field(max_length=500, description="CAN-SPAM requires it in every email.")
    website: str = Field(default="", max_length=300, description="Shop URL for calls to action.")
    brand_policy: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=sa.JSON,
        nullable=False,
        description="banned_phrases, required_disclaimer, max_subject_length (see BrandPolicy)",
    )
    llm_daily_budget_usd: float | None = Field(
        default=None,
        ge=0,
        description="Daily LLM spend limit; None uses TAILOR_LLM_DAILY_BUDGET_USD.",
    )
    daily_email_limit: int = Field(
        default=3, ge=1, description="Most marketing emails one person gets per day."
    )
    providers: list[str] | None = Field(
        default=None,
        sa_type=sa.JSON,
        nullable=True,
        description="Email providers in failover order; None uses TAILOR_PROVIDERS.",
    )
    send_rate_per_s: float | None = Field(
        default=None, gt=0, description="Sending rate limit; None uses TAILOR_SEND_RATE_PER_S."
    )
    # No foreign key (template versions already point at the tenant); the API checks it.
    default_template_version_id: int | None = Field(
        default=None,
        description="Used for a recipient the campaign's template cannot render for.",
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Contact(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "email", name="uq_contact_tenant_email"),
        sa.Index("ix_contact_tenant_external", "tenant_id", "external_id"),  # Segment's userId
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=64)
    email: str = Field(max_length=320)
    external_id: str | None = Field(default=None, max_length=200)
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    timezone: str = Field(default="UTC", max_length=64)
    locale: str = Field(default="en", max_length=16)
    device: str = Field(default="desktop", max_length=16)
    engagement_score: int = Field(default=50, ge=0, le=100)
    last_open_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    purchase_frequency: float = Field(default=0.0, ge=0, description="Purchases per month.")
    preferred_categories: list[str] = _json()
    cart_items: list[str] = _json()
    browse_items: list[str] = _json()
    # Real-time features, updated by each event (``tailor.profiles.features``).
    last_click_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    last_purchase_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    order_count: int = Field(default=0, ge=0)
    birthday: str | None = Field(default=None, max_length=5, description="MM-DD, no year.")
    # Derived daily (``tailor.profiles.features``): send-time optimisation and engagement.
    avg_time_to_open_s: float | None = Field(default=None, ge=0)
    best_send_hour: int | None = Field(default=None, ge=0, le=23, description="Local hour.")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ConsentRecord(SQLModel, table=True):
    """Append-only ledger: a revocation is a new row, never an update."""

    __tablename__ = "consent_record"
    __table_args__ = (sa.Index("ix_consent_contact_latest", "contact_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    contact_id: int = Field(foreign_key="contact.id")
    channel: str = Field(default="email", max_length=16)
    status: str = Field(max_length=16)
    source: str = Field(max_length=100, description="Where it came from: signup-form, api, ...")
    method: str = Field(max_length=100, description="How: double-opt-in, one-click, ...")
    wording_version: str = Field(max_length=100, description="Version of the consent text shown.")
    recorded_by: str = Field(max_length=200, description="Who recorded it: actor or system.")
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Product(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("tenant_id", "sku", name="uq_product_tenant_sku"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    sku: str = Field(max_length=64)
    name: str = Field(max_length=200)
    category: str = Field(max_length=100)
    price_cents: int = Field(ge=0)
    url: str = Field(max_length=500)


class Template(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_template_tenant_name"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class TemplateVersion(SQLModel, table=True):
    """Immutable once written: an edit is a new version."""

    __tablename__ = "template_version"
    __table_args__ = (sa.UniqueConstraint("template_id", "version", name="uq_template_version"),)

    id: int | None = Field(default=None, primary_key=True)
    template_id: int = Field(foreign_key="template.id", index=True)
    version: int = Field(ge=1)
    subject: str = Field(max_length=300)
    preheader: str = Field(default="", max_length=300)
    body: str = Field(sa_type=sa.Text)
    cta_text: str = Field(max_length=100)
    cta_url: str = Field(max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Campaign(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    name: str = Field(max_length=200)
    template_version_id: int = Field(foreign_key="template_version.id")
    prompt_version: str = Field(default=DEFAULT_PROMPT, max_length=64)
    segment: dict[str, Any] = _json(dict)
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
    attempts: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    dispatched_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class Event(SQLModel, table=True):
    """A Segment-style event as received (track or identify). The message id makes a
    redelivery a no-op; the contact is resolved from ``user_id`` (the contact's external id)."""

    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "message_id", name="uq_event_tenant_message"),
        sa.Index("ix_event_contact_time", "contact_id", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    contact_id: int | None = Field(default=None, foreign_key="contact.id")
    kind: str = Field(default="track", max_length=16, description="track or identify")
    type: str = Field(max_length=100, description="The event name, e.g. cart.abandoned")
    user_id: str | None = Field(default=None, max_length=200)
    anonymous_id: str | None = Field(default=None, max_length=200)
    properties: dict[str, Any] = _json(dict)
    # From Segment's context, normalised (the rest of the context, IP and user agent included,
    # is not kept): the daily job derives the person's usual device and timezone from these.
    device: str | None = Field(default=None, max_length=16)
    timezone: str | None = Field(default=None, max_length=64)
    message_id: str | None = Field(default=None, max_length=200)
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class JourneyDefinition(SQLModel, table=True):
    """One version of a journey: its steps as data (``tailor.journeys.definitions``). Immutable:
    an edit is a new version, and a running journey keeps the version it started with."""

    __tablename__ = "journey_definition"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "key", "version", name="uq_journey_definition_version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    key: str = Field(max_length=64, description="welcome, cart_abandonment, ...")
    version: int = Field(ge=1)
    name: str = Field(max_length=200)
    steps: list[dict[str, Any]] = _json()
    exit_on: list[str] = _json()  # events that end a running journey (a purchase, an open)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class TriggerRule(SQLModel, table=True):
    """Maps an event to a journey, with conditions over the person's last 7 days of events."""

    __tablename__ = "trigger_rule"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    event: str = Field(max_length=100)
    journey_key: str = Field(max_length=64)
    conditions: dict[str, Any] = _json(dict)
    enabled: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class JourneyRun(SQLModel, table=True):
    """One run of a journey for one person (a Temporal workflow run)."""

    __tablename__ = "journey_run"
    __table_args__ = (sa.Index("ix_journey_run_contact_status", "contact_id", "status"),)

    id: str = Field(primary_key=True, max_length=64, description="The workflow run id.")
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    contact_id: int = Field(foreign_key="contact.id")
    journey_key: str = Field(max_length=64)
    definition_id: int = Field(foreign_key="journey_definition.id")
    workflow_id: str = Field(max_length=200)
    status: str = Field(default=JourneyStatus.RUNNING, max_length=16)
    reason: str | None = Field(default=None, max_length=200)
    emails_sent: int = Field(default=0)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class DeadLetter(SQLModel, table=True):
    """An event whose trigger processing failed; listed and replayed through the API."""

    __tablename__ = "dead_letter"
    __table_args__ = (sa.Index("ix_dead_letter_tenant_status", "tenant_id", "status", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64)
    event_id: int = Field(foreign_key="event.id", unique=True)
    error: str = Field(max_length=1000)
    attempts: int = Field(default=1)
    status: str = Field(default=DeadLetterStatus.OPEN, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    replayed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class LlmUsage(SQLModel, table=True):
    """One row per cluster lookup: a provider call (tokens, dollars) or a cache hit."""

    __tablename__ = "llm_usage"
    __table_args__ = (sa.Index("ix_llm_usage_tenant_day", "tenant_id", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64)
    campaign_id: str | None = Field(default=None, foreign_key="campaign.id", index=True)
    provider: str = Field(max_length=32)
    model: str = Field(max_length=100)
    prompt_version: str = Field(max_length=64)
    cache_hit: bool = Field(default=False)
    input_tokens: int = Field(default=0)
    output_tokens: int = Field(default=0)
    cost_usd: float = Field(default=0.0)
    day: str = Field(max_length=10, description="UTC date, for daily budgets")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class GenerationCache(SQLModel, table=True):
    """LLM-written content per (template version, prompt version, cluster features)."""

    __tablename__ = "generation_cache"

    key: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    template_version_id: int = Field(foreign_key="template_version.id")
    prompt_version: str = Field(max_length=64)
    provider: str = Field(max_length=32)
    model: str = Field(max_length=100)
    content: dict[str, Any] = _json(dict)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class PiiIncident(SQLModel, table=True):
    """PII found in generated content and redacted before sending. Types only, never values."""

    __tablename__ = "pii_incident"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    campaign_id: str | None = Field(default=None, foreign_key="campaign.id", index=True)
    source: str = Field(max_length=100, description="What wrote it, e.g. llm:openai:gpt-5-mini")
    entities: list[str] = _json()
    action: str = Field(default="redacted", max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ReviewItem(SQLModel, table=True):
    """LLM-written content for one cluster of a campaign that a person must approve first:
    quality below the bar, or a brand rule broken. Holds no PII: placeholders, not names."""

    __tablename__ = "review_item"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "cluster_key", name="uq_review_campaign_cluster"),
        sa.Index("ix_review_tenant_status", "tenant_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64)
    campaign_id: str = Field(foreign_key="campaign.id", max_length=64, index=True)
    cluster_key: str = Field(max_length=64, description="Generation cache key of the cluster.")
    cluster: dict[str, Any] = _json(dict)  # tier, category, device, cart: who reads it
    provider: str = Field(max_length=32)
    model: str = Field(max_length=100)
    prompt_version: str = Field(max_length=64)
    content: dict[str, Any] = _json(dict)  # what the model wrote (PII-redacted)
    evaluation: dict[str, Any] = _json(dict)  # quality, relevance, violations, verdict
    reason: str = Field(max_length=1000)
    status: str = Field(default=ReviewStatus.PENDING, max_length=16)
    final_content: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    edited: bool = Field(default=False)
    decided_by: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=1000)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


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
    segment: dict[str, Any] = _json(dict)
    metric: str = Field(max_length=16, description="open, click or conversion")
    test_fraction: float = Field(gt=0, lt=1)
    threshold: float = Field(description="Probability to beat all that declares a winner.")
    min_sent_per_variant: int = Field(ge=1)
    window_s: int = Field(ge=1)
    default_variant: str = Field(max_length=16)
    variants: list[dict[str, Any]] = _json()  # key, template_version_id, campaign_id
    status: str = Field(default=AbTestStatus.TESTING, max_length=16, index=True)
    winner: str | None = Field(default=None, max_length=16)
    decision: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    rollout_campaign_id: str | None = Field(default=None, max_length=64)
    workflow_id: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class Engagement(SQLModel, table=True):
    """The first open, click or conversion of one send: what A/B decisions count. Tracking
    (pixels, provider webhooks) reports here; a repeat of the same kind changes nothing."""

    __table_args__ = (
        sa.UniqueConstraint("send_id", "metric", name="uq_engagement_send_metric"),
        sa.Index("ix_engagement_campaign_metric", "campaign_id", "metric"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64)
    campaign_id: str = Field(foreign_key="campaign.id", max_length=64)
    send_id: int = Field(foreign_key="send.id")
    contact_id: int = Field(foreign_key="contact.id")
    metric: str = Field(max_length=16, description="open, click or conversion")
    occurred_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
