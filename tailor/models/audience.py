"""The audience: contacts with their features, the consent ledger, and their events."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tailor.models.base import UTCDateTime, json_field, utcnow


class ConsentStatus(StrEnum):
    GRANTED = "granted"
    REVOKED = "revoked"
    SUPPRESSED = "suppressed"  # a provider refused the address for good (hard bounce)


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
    soft_bounces: int = Field(
        default=0, ge=0, description="Soft bounces in a row; suppressed after too many."
    )
    last_open_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    purchase_frequency: float = Field(default=0.0, ge=0, description="Purchases per month.")
    preferred_categories: list[str] = json_field()
    cart_items: list[str] = json_field()
    browse_items: list[str] = json_field()
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
    # Set when the person was erased: the row stays (the consent ledger and sends point at
    # it) with nothing left that identifies them.
    erased_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class ConsentRecord(SQLModel, table=True):
    """Append-only ledger: a revocation is a new row, never an update; each contact's rows are a
    hash chain (``tailor.consent.ledger``)."""

    __tablename__ = "consent_record"
    __table_args__ = (
        sa.Index("ix_consent_contact_latest", "contact_id", "id"),
        # One row per place in a contact's chain: two writers cannot both extend it from one head.
        sa.UniqueConstraint("contact_id", "seq", name="uq_consent_contact_seq"),
    )

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
    # The contact's chain (tailor.consent.ledger): place in it, the row before's hash, its own.
    seq: int = Field(ge=1)
    prev_hash: str = Field(max_length=64)
    row_hash: str = Field(max_length=64)


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
    properties: dict[str, Any] = json_field(dict)
    # From Segment's context, normalised (the rest of the context, IP and user agent included,
    # is not kept): the daily job derives the person's usual device and timezone from these.
    device: str | None = Field(default=None, max_length=16)
    timezone: str | None = Field(default=None, max_length=64)
    message_id: str | None = Field(default=None, max_length=200)
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
