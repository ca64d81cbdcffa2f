"""LLM generation: usage and cost, the content cache, PII incidents, and the review queue."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tailor.models.base import UTCDateTime, json_field, utcnow


class ReviewStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # send the (possibly edited) content
    REJECTED = "rejected"  # send the rules-tier email instead
    EXPIRED = "expired"  # nobody decided in time (or the campaign ended): rules-tier email


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
    content: dict[str, Any] = json_field(dict)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class PiiIncident(SQLModel, table=True):
    """PII found in generated content and redacted before sending. Types only, never values."""

    __tablename__ = "pii_incident"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    campaign_id: str | None = Field(default=None, foreign_key="campaign.id", index=True)
    source: str = Field(max_length=100, description="What wrote it, e.g. llm:openai:gpt-5-mini")
    entities: list[str] = json_field()
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
    cluster: dict[str, Any] = json_field(dict)  # tier, category, device, cart: who reads it
    provider: str = Field(max_length=32)
    model: str = Field(max_length=100)
    prompt_version: str = Field(max_length=64)
    content: dict[str, Any] = json_field(dict)  # what the model wrote (PII-redacted)
    evaluation: dict[str, Any] = json_field(dict)  # quality, relevance, violations, verdict
    reason: str = Field(max_length=1000)
    status: str = Field(default=ReviewStatus.PENDING, max_length=16)
    final_content: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    edited: bool = Field(default=False)
    decided_by: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=1000)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
