"""Outbound webhook endpoints as the API takes and shows them. The signing secret appears in
two responses only: the endpoint's creation and a rotation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from api.schemas.base import OneLine, RowIdField, Strict
from tailor.outbound.events import EventType

Subscribed = Literal[EventType, "*"]  # nested Literals flatten: one enum, one error
Format = Literal["tailor", "segment"]
# A Segment (or RudderStack, Jitsu) write key: printable, no spaces.
WriteKey = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7E]+$")
]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
_TYPES = (
    "Event types to receive (`email.delivered`, `email.bounced`, `email.complained`, "
    '`email.unsubscribed`, `email.opened`, `email.clicked`, `email.converted`), or `"*"` for all.'
)


class EndpointIn(Strict):
    url: Url = Field(
        description="https, on a public address (development also allows http://localhost).",
        examples=["https://hooks.shop.example/tailor"],
    )
    event_types: list[Subscribed] = Field(min_length=1, max_length=20, description=_TYPES)
    format: Format = Field(
        "tailor",
        description='`tailor`: `{"events": [...]}`. `segment`: a Segment `/v1/batch` body of '
        "`track` calls (Email Opened, Email Bounced, ...), for a CDP's HTTP API.",
    )
    description: Annotated[OneLine, Field(max_length=200)] = ""
    segment_write_key: WriteKey | None = Field(
        None,
        description="Sent as the HTTP Basic username (format `segment` only). Stored "
        "encrypted; never shown again.",
    )
    batch_size: int = Field(100, ge=1, le=500, description="Events per request, at most.")


class EndpointUpdate(Strict):
    """The fields to change; the others stay. `status` pauses (`disabled`) or resumes."""

    url: Url | None = None
    event_types: list[Subscribed] | None = Field(None, min_length=1, max_length=20)
    format: Format | None = None
    description: Annotated[OneLine, Field(max_length=200)] | None = None
    segment_write_key: WriteKey | None = Field(None, description="null removes it.")
    batch_size: int | None = Field(None, ge=1, le=500)
    status: Literal["active", "disabled"] | None = None


class EndpointPublic(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str]
    format: str
    status: str = Field(description="active, or disabled (by a person, or after failing).")
    disabled_reason: str | None
    batch_size: int
    has_segment_write_key: bool
    secret_version: int
    previous_secret_expires_at: datetime | None = Field(
        description="Until then deliveries also carry a signature with the previous secret."
    )
    failing_batches: int = Field(description="Dead-lettered batches in a row.")
    last_delivered_at: datetime | None
    last_failed_at: datetime | None
    last_error: str | None
    pending: int = Field(description="Events queued for it, counted up to 10,000.")
    created_at: datetime
    updated_at: datetime


class EndpointCreated(EndpointPublic):
    secret: str = Field(
        description="The signing secret (`whsec_...`). Shown only here: store it now."
    )


class EndpointsPublic(BaseModel):
    items: list[EndpointPublic]


class RotateIn(Strict):
    expire_previous_in_hours: float = Field(
        24.0, ge=0, le=168, description="How long the previous secret keeps signing too."
    )


class SecretRotated(BaseModel):
    id: str
    secret: str = Field(description="The new signing secret. Shown only here.")
    secret_version: int
    previous_secret_expires_at: datetime | None


class DeadLetterPublic(BaseModel):
    id: int
    event_id: str = Field(description="The event's id: receivers deduplicate on it.")
    event_type: str
    occurred_at: datetime
    contact_id: int | None
    send_id: int | None
    attempts: int
    last_error: str | None
    dead_at: datetime | None = Field(validation_alias="settled_at")


class ReplayIn(Strict):
    ids: list[RowIdField] | None = Field(
        None, max_length=1000, description="Dead letters to replay; omit for all of them."
    )


class ReplayPublic(BaseModel):
    replayed: int = Field(description="Queued again (as new deliveries, same event ids).")
    remaining: int = Field(description="Still dead: call again to replay more (10,000 a call).")


class TestDelivery(BaseModel):
    delivered: bool
    status_code: int | None = Field(description="The endpoint's answer, if it answered.")
    error: str | None
    duration_ms: float
