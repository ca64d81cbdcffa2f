"""Contacts and their consent ledger: upsert, read, and consent changes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from api.schemas.base import OneLine, Strict
from tailor.accounts.onboarding import timezone_name


class ConsentIn(Strict):
    """A consent change. Who recorded it is the caller's key (or token subject), never a value
    the request states."""

    status: Literal["granted", "revoked"]
    source: OneLine = Field(min_length=1, max_length=100, examples=["signup-form"])
    method: OneLine = Field(min_length=1, max_length=100, examples=["double-opt-in"])
    wording_version: OneLine = Field(min_length=1, max_length=100, examples=["newsletter-v2"])
    recorded_by: OneLine | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Deprecated: the ledger records the caller's key as who recorded it. A value "
        "given here is kept only as an unverified note after the source: "
        '"signup-form (note: ...)", cut to the source\'s 100 characters.',
        json_schema_extra={"deprecated": True},
    )


#: What a profile list holds: catalog categories and SKUs, as long as the catalog allows.
Category = Annotated[OneLine, StringConstraints(min_length=1, max_length=100)]
Sku = Annotated[OneLine, StringConstraints(min_length=1, max_length=64)]


class ContactIn(Strict):
    """A contact by email. For an existing contact only the fields named are changed (send
    ``null`` to clear a name); a new contact gets the defaults below for the rest."""

    email: EmailStr
    external_id: OneLine | None = Field(None, max_length=200)
    first_name: OneLine | None = Field(None, max_length=100)
    last_name: OneLine | None = Field(None, max_length=100)
    timezone: str = Field("UTC", max_length=64, description="An IANA zone, e.g. Europe/Paris.")
    locale: OneLine = Field("en", max_length=16)
    device: Literal["mobile", "desktop", "tablet"] = "desktop"
    engagement_score: int = Field(50, ge=0, le=100)
    last_open_at: datetime | None = None
    purchase_frequency: float = Field(0.0, ge=0)
    preferred_categories: list[Category] = Field(default_factory=list, max_length=20)
    cart_items: list[Sku] = Field(default_factory=list, max_length=100)
    browse_items: list[Sku] = Field(default_factory=list, max_length=100)
    consent: ConsentIn | None = Field(None, description="Recorded in the consent ledger.")

    # A send's local hour comes from it: an unknown zone would fail at send time, not here.
    _zone = field_validator("timezone")(timezone_name)

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


class EmailOnItsWay(BaseModel):
    """An email claimed for delivery before the revocation committed: nothing can call it back."""

    model_config = ConfigDict(from_attributes=True)

    send_id: int
    campaign_id: str = Field(description="The campaign, or the journey step's campaign.")
    status: str = Field(
        description="After the wait: sent (the provider took it: it will arrive), failed "
        "(refused: it will not), or dispatched (not settled within consent_settle_s)."
    )


class ConsentRecorded(BaseModel):
    record: ConsentPublic
    signalled_campaigns: list[str] = Field(
        description="Running campaigns told at once; every send also checks the ledger."
    )
    stopped_journeys: list[str] = Field(
        default_factory=list, description="Running journeys of the contact, stopped."
    )
    on_its_way: list[EmailOnItsWay] = Field(
        default_factory=list,
        description="A revocation's emails already on their way when it committed (claimed, "
        "not yet accepted): empty means no email reaches the contact after this answer.",
    )


class ContactListItem(BaseModel):
    """A contact in ``GET /v1/contacts``: who, and consent; ``GET /v1/contacts/{id}`` has the
    profile and the ledger."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    first_name: str | None
    last_name: str | None
    consent: str = Field(description="granted, revoked, suppressed, or none (no ledger row)")
    created_at: datetime


class ErasurePublic(BaseModel):
    """A person's erasure: asked for once, done by a workflow."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    contact_id: int
    status: str = Field(description="requested (the workflow is erasing), or done.")
    requested_by: str
    requested_at: datetime
    completed_at: datetime | None
    counts: dict[str, int] = Field(description="Rows removed or blanked, by table.")
    workflow_id: str | None = Field(None, description="The erasure's workflow in Temporal.")
    on_its_way: list[EmailOnItsWay] = Field(
        default_factory=list,
        description="Emails claimed before sending stopped (as for a revocation).",
    )


class ContactExport(BaseModel):
    """Everything Tailor holds about one person (GDPR Art. 15 and 20), table by table."""

    format: str = "tailor-contact-export"
    tenant_id: str
    contact_id: int
    exported_at: datetime
    data: dict[str, Any] = Field(
        description="contact, consent, events, emails, opens_and_clicks, provider_events, "
        "engagement, conversions, journeys."
    )
