"""Segment-compatible event calls (track, identify, batch) and email engagement."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from api.schemas.base import TEXT_ID_PATTERN, RowIdField, Strict
from tailor.store.events import normalise_event_name


class Traits(BaseModel):
    """An identify's traits: any keys. ``email``, when given, names the contact, so it must be
    an address."""

    model_config = ConfigDict(extra="allow")

    email: EmailStr | None = None


class SegmentCall(BaseModel):
    """A Segment track or identify call, in Segment's field names. Fields Tailor does not use
    (``integrations``, ``channel``, ``version``, ``sentAt``, ``receivedAt``, ``writeKey``, ...)
    are ignored, so a CDP can send exactly what it sends Segment."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    # page, screen, group and alias calls are accepted and ignored (a CDP forwards them all).
    type: Literal["track", "identify", "page", "screen", "group", "alias"]
    anonymous_id: str | None = Field(None, alias="anonymousId", min_length=1, max_length=200)
    user_id: str | None = Field(
        None,
        alias="userId",
        min_length=1,
        max_length=200,
        description="Your id for the person: the contact's external_id.",
    )
    event: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        validate_default=True,
        description="A track's name, e.g. `Order Completed` (stored as `order.completed`).",
    )
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: Traits = Field(default_factory=Traits)
    context: dict[str, Any] = Field(default_factory=dict)
    timestamp: AwareDatetime | None = Field(
        None, description="When it happened, ISO 8601 with an offset; default: on receipt."
    )
    original_timestamp: AwareDatetime | None = Field(
        None, alias="originalTimestamp", description="Used when there is no timestamp."
    )
    message_id: str | None = Field(
        None,
        alias="messageId",
        min_length=1,
        max_length=200,
        description="Deduplicates redeliveries; default: a hash of the event.",
    )

    @model_validator(mode="before")
    @classmethod
    def _user_present(cls, data: Any) -> Any:
        # Pydantic names a missing field by its Python name (user_id); given, by its alias.
        if isinstance(data, dict) and "userId" not in data:
            return {**data, "userId": None}
        return data

    @field_validator("properties", "traits", "context", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("user_id")
    @classmethod
    def _someone(cls, value: str | None, info: ValidationInfo) -> str | None:
        # An invalid anonymousId is reported on its own (it is then absent from info.data).
        if value is None and "anonymous_id" in info.data and info.data["anonymous_id"] is None:
            raise ValueError("userId or anonymousId is required")
        return value

    @field_validator("event")
    @classmethod
    def _named(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("type") == "track":
            raise ValueError("a track call needs an event name")
        if value is not None and not normalise_event_name(value):
            raise ValueError("must contain more than spaces, dots, hyphens and underscores")
        return value

    @property
    def occurred_at(self) -> datetime | None:
        return self.timestamp or self.original_timestamp


class TrackIn(SegmentCall):
    type: Literal["track"] = "track"


class IdentifyIn(SegmentCall):
    type: Literal["identify"] = "identify"


class BatchIn(BaseModel):
    """Up to 1,000 calls, all stored or (one malformed) none."""

    batch: list[SegmentCall] = Field(min_length=1, max_length=1000)


class EventsAccepted(BaseModel):
    success: bool = True
    accepted: int = Field(description="Events stored now.")
    duplicates: int = Field(description="Events already stored (same messageId): ignored.")
    ignored: int = Field(0, description="page, screen, group and alias calls: not used.")


class EngagementIn(Strict):
    """One tracked open, click or conversion of an email Tailor sent."""

    type: Literal["open", "click", "conversion"]
    message_id: str | None = Field(
        None, max_length=300, description="The email's Message-ID header (what pixels carry)."
    )
    campaign_id: str | None = Field(None, max_length=64, pattern=TEXT_ID_PATTERN)
    contact_id: RowIdField | None = None
    occurred_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _which_send(self) -> EngagementIn:
        if self.message_id is None and (self.campaign_id is None or self.contact_id is None):
            raise ValueError("give message_id, or campaign_id and contact_id")
        return self


class EngagementRecorded(BaseModel):
    recorded: bool = Field(description="False: this email's first one was recorded before.")
    campaign_id: str
    contact_id: int
    type: str
