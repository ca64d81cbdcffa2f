"""The engagement loop's raw input: tracked opens and clicks, and ESP delivery events."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tailor.models.base import UTCDateTime, utcnow


class TrackingHit(SQLModel, table=True):
    """One fetch of an open pixel or click redirect, human or machine (``rule`` says which rule
    of ``tailor.tracking.machines`` decided). No IP address or user agent is kept."""

    __tablename__ = "tracking_hit"
    __table_args__ = (sa.Index("ix_tracking_hit_send", "send_id", "kind", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    send_id: int = Field(foreign_key="send.id")
    kind: str = Field(max_length=8, description="open or click")
    link_index: int | None = None
    human: bool
    rule: str | None = Field(default=None, max_length=64)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class EspEvent(SQLModel, table=True):
    """A provider's report about a send (delivered, bounced, complained...), stored once per
    provider event id whatever order or how often it arrives."""

    __tablename__ = "esp_event"
    __table_args__ = (
        sa.UniqueConstraint("provider", "provider_event_id", name="uq_esp_event_provider_id"),
        sa.Index("ix_esp_event_send", "send_id", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str | None = Field(default=None, max_length=64, index=True)
    provider: str = Field(max_length=32)
    provider_event_id: str = Field(max_length=300)
    send_id: int | None = Field(default=None, foreign_key="send.id")
    kind: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=200)
    occurred_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
