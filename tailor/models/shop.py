"""The shop: a tenant, its product catalog and its templates (immutable versions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tailor.models.base import UTCDateTime, utcnow


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
    timezone: str = Field(
        default="UTC", max_length=64, description="IANA zone for the shop's reports and schedules."
    )
    tracking_enabled: bool = Field(default=True, description="Open and click tracking.")
    attribution_click_hours: int = Field(
        default=120, ge=1, le=2160, description="An order this soon after a click is the email's."
    )
    attribution_open_hours: int = Field(
        default=24, ge=0, le=2160, description="The weaker open-only rule's window; 0 turns it off."
    )
    pause_complaint_rate: float = Field(
        default=0.003, gt=0, le=1, description="A campaign above this complaint rate is paused."
    )
    pause_bounce_rate: float = Field(
        default=0.05, gt=0, le=1, description="A campaign above this bounce rate is paused."
    )
    pause_min_sent: int = Field(
        default=1000, ge=1, description="Emails sent before the pause rates are judged."
    )
    tracking_key_version: int = Field(
        default=1, ge=1, description="Signs tracking links; the previous version still verifies."
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Product(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("tenant_id", "sku", name="uq_product_tenant_sku"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    sku: str = Field(max_length=64)
    name: str = Field(max_length=200)
    category: str = Field(max_length=100)
    price_cents: int = Field(ge=0)
    url: str = Field(max_length=500)
    # A removed product is kept (past emails name it) but never recommended or priced again.
    removed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


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
