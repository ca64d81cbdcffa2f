"""The tenant's settings: what its emails say about the sender, its brand, its limits."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, EmailStr, Field, StrictBool, field_validator

from api.schemas.base import Strict
from tailor.accounts.onboarding import postal_text, single_line, timezone_name
from tailor.personalise.brand import BrandPolicy


class BrandPolicyPatch(Strict):
    """The keys to change; the others keep their values. Checked as a whole by BrandPolicy."""

    banned_phrases: list[str] | None = Field(None, max_length=500)
    required_disclaimer: str | None = Field(None, max_length=1000)
    max_subject_length: int | None = Field(None, description="10 to 200 characters.")
    tone: Literal["friendly", "formal"] | None = None

    @field_validator("banned_phrases")
    @classmethod
    def _phrases(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not p.strip() or len(p) > 200 for p in value):
            raise ValueError("each phrase must be 1 to 200 characters")
        return value


class TenantSettingsPatch(Strict):
    """Only the fields named change. A field may not be null unless it says so."""

    postal_address: str | None = Field(
        None, min_length=1, max_length=500, description="Printed in every email (CAN-SPAM)."
    )
    from_name: str | None = Field(None, min_length=1, max_length=200)
    from_email: EmailStr | None = Field(
        None, max_length=320, description="The sender address; its domain is the sending domain."
    )
    timezone: str | None = Field(None, description="An IANA zone, e.g. Europe/Paris.")
    brand_policy: BrandPolicyPatch | None = None
    daily_email_limit: int | None = Field(
        None, ge=1, le=50, description="Most marketing emails one person gets per day."
    )
    llm_daily_budget_usd: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Null: the server's default budget."
    )
    tracking_enabled: StrictBool | None = Field(None, description="Open and click tracking.")
    attribution_click_hours: int | None = Field(
        None, ge=1, le=2160, description="An order this many hours after a click is the email's."
    )
    attribution_open_hours: int | None = Field(
        None, ge=0, le=2160, description="The weaker open-only rule's window; 0 turns it off."
    )
    pause_complaint_rate: float | None = Field(
        None, gt=0, le=1, allow_inf_nan=False,
        description="Pause a campaign above this complaint rate (0.003 = 0.3%).",
    )  # fmt: skip
    pause_bounce_rate: float | None = Field(
        None, gt=0, le=1, allow_inf_nan=False,
        description="Pause a campaign above this hard bounce rate (0.05 = 5%).",
    )  # fmt: skip
    pause_min_sent: int | None = Field(
        None, ge=1, le=10_000_000, description="Emails sent before the pause rates are judged."
    )

    @field_validator(
        "postal_address", "from_name", "from_email", "timezone", "brand_policy",
        "daily_email_limit", "tracking_enabled", "attribution_click_hours",
        "attribution_open_hours", "pause_complaint_rate", "pause_bounce_rate", "pause_min_sent",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only on values sent: an omitted field stays as it is, an explicit null is refused.
        if value is None:
            raise ValueError("may not be null; leave the field out to keep it")
        return value

    @field_validator("postal_address", "from_name")
    @classmethod
    def _text(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("may not be blank")
        return value

    # The sender name goes into the From header: a line break would let it write headers.
    _one_line = field_validator("from_name")(single_line)
    _address = field_validator("postal_address")(postal_text)
    _zone = field_validator("timezone")(timezone_name)


class TenantSettingsPublic(BaseModel):
    postal_address: str
    from_name: str
    from_email: str
    timezone: str
    brand_policy: BrandPolicy = Field(description="With defaults filled in.")
    daily_email_limit: int
    llm_daily_budget_usd: float | None = Field(description="Null: the server's default.")
    effective_llm_daily_budget_usd: float
    tracking_enabled: bool
    attribution_click_hours: int
    attribution_open_hours: int
    pause_complaint_rate: float
    pause_bounce_rate: float
    pause_min_sent: int
