"""Request and response schemas, separate from the table models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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

from tailor.personalise.prompts import DEFAULT_PROMPT, PROMPTS
from tailor.store.events import normalise_event_name
from tailor.store.segments import Segment


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- contacts ---------------------------------------------------------------------------------


class ConsentIn(Strict):
    status: Literal["granted", "revoked"]
    source: str = Field(min_length=1, max_length=100, examples=["signup-form"])
    method: str = Field(min_length=1, max_length=100, examples=["double-opt-in"])
    wording_version: str = Field(min_length=1, max_length=100, examples=["newsletter-v2"])
    recorded_by: str = Field("api", min_length=1, max_length=200)


class ContactIn(Strict):
    email: EmailStr
    external_id: str | None = Field(None, max_length=200)
    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)
    timezone: str = Field("UTC", max_length=64)
    locale: str = Field("en", max_length=16)
    device: Literal["mobile", "desktop", "tablet"] = "desktop"
    engagement_score: int = Field(50, ge=0, le=100)
    last_open_at: datetime | None = None
    purchase_frequency: float = Field(0.0, ge=0)
    preferred_categories: list[str] = Field(default_factory=list, max_length=20)
    cart_items: list[str] = Field(default_factory=list, max_length=100)
    browse_items: list[str] = Field(default_factory=list, max_length=100)
    consent: ConsentIn | None = Field(None, description="Recorded in the consent ledger.")

    @model_validator(mode="after")
    def _aware(self) -> ContactIn:
        if self.last_open_at is not None and self.last_open_at.tzinfo is None:
            raise ValueError("last_open_at must include a timezone offset")
        return self


class ContactsIn(Strict):
    contacts: list[ContactIn] = Field(min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _unique(self) -> ContactsIn:
        seen: dict[str, int] = {}
        for index, contact in enumerate(self.contacts):
            email = contact.email.lower()
            if email in seen:
                raise ValueError(
                    f"contacts[{index}].email duplicates contacts[{seen[email]}].email"
                )
            seen[email] = index
        return self


class ContactUpserted(BaseModel):
    id: int
    email: str
    created: bool


class ContactsUpserted(BaseModel):
    data: list[ContactUpserted]
    count: int
    created: int
    updated: int


class ConsentPublic(BaseModel):
    id: int
    status: str
    source: str
    method: str
    wording_version: str
    recorded_by: str
    recorded_at: datetime


class ContactPublic(BaseModel):
    id: int
    email: str
    external_id: str | None
    first_name: str | None
    last_name: str | None
    timezone: str
    locale: str
    device: str
    engagement_score: int
    last_open_at: datetime | None
    purchase_frequency: float
    preferred_categories: list[str]
    cart_items: list[str]
    browse_items: list[str]
    consent: str = Field(description="granted, revoked, or none")
    consent_history: list[ConsentPublic]


class ConsentRecorded(BaseModel):
    record: ConsentPublic
    signalled_campaigns: list[str] = Field(
        description="Running campaigns told at once; every send also checks the ledger."
    )
    stopped_journeys: list[str] = Field(
        default_factory=list, description="Running journeys of the contact, stopped."
    )


# --- templates --------------------------------------------------------------------------------


class TemplateVersionIn(Strict):
    subject: str = Field(min_length=1, max_length=300)
    preheader: str = Field("", max_length=300)
    body: str = Field(min_length=1, max_length=100_000)
    cta_text: str = Field(min_length=1, max_length=100)
    cta_url: str = Field(min_length=1, max_length=500)

    @field_validator("cta_url")
    @classmethod
    def _https_or_mailto(cls, value: str) -> str:
        if "{{" not in value and not value.startswith(("https://", "mailto:")):
            raise ValueError("must start with https:// or mailto: (or be a {{ expression }})")
        return value


class DefaultTemplate(Strict):
    template_version_id: int | None = Field(
        description="A version of one of your templates; null removes the default."
    )


class TemplateIn(TemplateVersionIn):
    name: str = Field(min_length=1, max_length=200)


class TemplateVersionPublic(BaseModel):
    id: int
    version: int
    subject: str
    preheader: str
    body: str
    cta_text: str
    cta_url: str
    created_at: datetime


class TemplatePublic(BaseModel):
    id: int
    name: str
    versions: list[TemplateVersionPublic]


# --- campaigns --------------------------------------------------------------------------------


class CampaignIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    template_version_id: int = Field(ge=1)
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


# --- A/B tests --------------------------------------------------------------------------------


class AbVariantIn(Strict):
    key: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    template_version_id: int = Field(ge=1)


class AbTestIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    segment: Segment = Field(default_factory=Segment)
    variants: list[AbVariantIn] = Field(min_length=2, max_length=8)
    metric: Literal["open", "click", "conversion"] = "click"
    test_fraction: float = Field(
        0.1, gt=0, le=0.5, description="Share of the audience in the test cells, split evenly."
    )
    threshold: float = Field(
        0.95, ge=0.8, lt=1, description="Probability to beat all that declares a winner."
    )
    min_sent_per_variant: int = Field(200, ge=1)
    window_hours: float = Field(24, gt=0, le=24 * 14, description="Engagement window.")
    default_variant: str | None = Field(
        None, description="Sent when the test is inconclusive; default: the first variant."
    )

    @model_validator(mode="after")
    def _variants(self) -> AbTestIn:
        keys = [v.key for v in self.variants]
        if len(set(keys)) != len(keys):
            raise ValueError("variant keys must be unique")
        if self.default_variant is not None and self.default_variant not in keys:
            raise ValueError(f"default_variant must be one of {keys}")
        return self


class AbTestStarted(BaseModel):
    id: str
    status: str
    workflow_id: str
    cell_campaign_ids: dict[str, str]
    status_url: str
    temporal_ui_url: str


class AbWinnerIn(Strict):
    variant: str = Field(min_length=1, max_length=16)


class EngagementRecorded(BaseModel):
    recorded: bool = Field(description="False: this email's first one was recorded before.")
    campaign_id: str
    contact_id: int
    type: str


class EngagementIn(Strict):
    """One tracked open, click or conversion of an email Tailor sent."""

    type: Literal["open", "click", "conversion"]
    message_id: str | None = Field(
        None, max_length=300, description="The email's Message-ID header (what pixels carry)."
    )
    campaign_id: str | None = Field(None, max_length=64)
    contact_id: int | None = Field(None, ge=1)
    occurred_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _which_send(self) -> EngagementIn:
        if self.message_id is None and (self.campaign_id is None or self.contact_id is None):
            raise ValueError("give message_id, or campaign_id and contact_id")
        return self


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
    counts: dict[str, int] = Field(description="Sends by status, from the sends table.")
    generation: dict[str, Any] = Field(
        description="Emails by generator (rules, openai, anthropic), LLM calls, cache hits, cost."
    )
    progress: dict[str, Any] | None = Field(
        None, description="Live workflow progress (query), while it runs."
    )
    temporal_ui_url: str


# --- review queue -----------------------------------------------------------------------------


class EmailEdits(Strict):
    """A reviewer's rewrite; omitted fields keep the model's words. ``{{first_name}}`` and
    ``{{cart_item}}`` are filled per recipient; links are added by Tailor, never written."""

    subject: str | None = Field(None, min_length=3, max_length=150)
    preheader: str | None = Field(None, max_length=200)
    body: str | None = Field(None, min_length=10, max_length=5000)
    cta_text: str | None = Field(None, min_length=2, max_length=60)


class ReviewApproval(Strict):
    reviewer: str = Field(min_length=1, max_length=200, examples=["maria@shop.example"])
    note: str | None = Field(None, max_length=1000)
    edits: EmailEdits | None = None


class ReviewRejection(Strict):
    reviewer: str = Field(min_length=1, max_length=200, examples=["maria@shop.example"])
    note: str | None = Field(None, max_length=1000)


class ReviewPublic(BaseModel):
    id: int
    campaign_id: str
    status: str
    reason: str = Field(description="Why it was flagged: the evaluator's verdict.")
    cluster: dict[str, Any] = Field(description="Who it is for: tier, category, device, cart.")
    provider: str
    model: str
    prompt_version: str
    content: dict[str, Any] = Field(description="What the model wrote (placeholders unfilled).")
    evaluation: dict[str, Any]
    final_content: dict[str, Any] | None
    edited: bool
    decided_by: str | None
    note: str | None
    decided_at: datetime | None
    created_at: datetime
    held_recipients: int = Field(description="Sends waiting for this decision.")


class ReviewDecided(BaseModel):
    review: ReviewPublic
    signalled: bool = Field(description="Whether the running campaign was told right away.")
    message: str


# --- events -----------------------------------------------------------------------------------


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


# --- journeys ---------------------------------------------------------------------------------


class JourneyPublic(BaseModel):
    id: int
    key: str
    version: int
    name: str
    steps: list[dict[str, Any]]
    exit_on: list[str]
    created_at: datetime


class JourneysPublic(BaseModel):
    data: list[JourneyPublic]
    count: int


class JourneyRunPublic(BaseModel):
    id: str
    contact_id: int
    journey_key: str
    definition_id: int
    workflow_id: str
    status: str
    reason: str | None
    emails_sent: int
    started_at: datetime
    ended_at: datetime | None


class JourneyRunsPublic(BaseModel):
    data: list[JourneyRunPublic]
    count: int


class TriggerRulePublic(BaseModel):
    id: int
    event: str
    journey_key: str
    conditions: dict[str, Any]
    enabled: bool


class TriggerRulesPublic(BaseModel):
    data: list[TriggerRulePublic]
    count: int


class DeadLetterPublic(BaseModel):
    id: int
    event_id: int
    event: str = ""
    contact_id: int | None = None
    message_id: str | None = None
    error: str
    attempts: int
    status: str
    created_at: datetime
    replayed_at: datetime | None


class DeadLettersPublic(BaseModel):
    data: list[DeadLetterPublic]
    count: int


class ReplayPublic(BaseModel):
    id: int
    status: str
    started: list[str]  # journeys started (or signalled) by the event
    forwarded: int  # running journeys told about it
