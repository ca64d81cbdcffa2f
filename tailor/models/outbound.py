"""Outbound webhooks: the URLs a tenant registers, and the outbox of deliveries to them.

An ``OutboundDelivery`` row is written in the same transaction as the fact it reports (an open,
a bounce, an unsubscribe), so no committed event is ever missing from the outbox; the
per-endpoint ``OutboundWebhookWorkflow`` then drains it (``tailor.outbound``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tailor.models.base import UTCDateTime, json_field, utcnow


class EndpointFormat(StrEnum):
    TAILOR = "tailor"  # Tailor's own JSON: {"events": [...]}
    SEGMENT = "segment"  # a Segment batch of track calls: {"batch": [...]}


class EndpointStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # by the tenant (a pause), or after too many failed batches in a row
    DELETED = "deleted"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # the retry budget ran out: a dead letter, listed and replayable
    REPLAYED = "replayed"  # a dead letter that was queued again (as a new row, ``replay_of``)


class WebhookEndpoint(SQLModel, table=True):
    """A URL a tenant receives events at. The signing secret is not stored: it is derived from
    the server's ``TAILOR_OUTBOUND_SECRET``, the endpoint id and ``secret_version``
    (``tailor.outbound.signing``); a Segment write key is stored sealed (AES-GCM)."""

    __tablename__ = "webhook_endpoint"
    __table_args__ = (sa.Index("ix_webhook_endpoint_tenant_status", "tenant_id", "status"),)

    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64)
    url: str = Field(max_length=2048)
    description: str = Field(default="", max_length=200)
    event_types: list[str] = json_field()
    format: str = Field(default=EndpointFormat.TAILOR, max_length=16)
    status: str = Field(default=EndpointStatus.ACTIVE, max_length=16)
    disabled_reason: str | None = Field(default=None, max_length=300)
    batch_size: int = Field(default=100, ge=1, le=500)
    secret_version: int = Field(default=1, ge=1)
    previous_secret_expires_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, nullable=True
    )
    write_key_sealed: str | None = Field(default=None, max_length=600)
    failing_batches: int = Field(default=0, ge=0, description="Dead-lettered batches in a row.")
    last_delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    last_failed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    last_error: str | None = Field(default=None, max_length=300)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class OutboundDelivery(SQLModel, table=True):
    """One event for one endpoint: the outbox row, then its delivery record. Ids and the
    event's facts only; the body is rendered at delivery in the endpoint's format."""

    __tablename__ = "outbound_delivery"
    # The workflow's queue (an endpoint's pending rows, oldest first) and the dead-letter list.
    __table_args__ = (sa.Index("ix_outbound_delivery_queue", "endpoint_id", "status", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64)
    endpoint_id: str = Field(foreign_key="webhook_endpoint.id", max_length=32)
    event_id: str = Field(max_length=40, description="Stable across retries and replays.")
    event_type: str = Field(max_length=32)
    contact_id: int | None = None
    send_id: int | None = None
    data: dict[str, Any] = json_field(dict)
    occurred_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    status: str = Field(default=DeliveryStatus.PENDING, max_length=16)
    attempts: int = Field(default=0, ge=0)
    last_error: str | None = Field(default=None, max_length=300)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    settled_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    replay_of: int | None = Field(default=None, description="The dead letter this replays.")
