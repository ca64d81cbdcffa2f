"""The human review queue: a reviewer's decision and edits, and the flagged item."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.schemas.base import OneLine, Strict


class EmailEdits(Strict):
    """A reviewer's rewrite; omitted fields keep the model's words. ``{{first_name}}`` and
    ``{{cart_item}}`` are filled per recipient; links are added by Tailor, never written."""

    subject: str | None = Field(None, min_length=3, max_length=150)
    preheader: str | None = Field(None, max_length=200)
    body: str | None = Field(None, min_length=10, max_length=5000)
    cta_text: str | None = Field(None, min_length=2, max_length=60)


_REVIEWER = Field(
    None,
    min_length=1,
    max_length=200,
    description="Deprecated: the decision is recorded as the caller's key (`decided_by`). A "
    'value given here is kept only as an unverified note after `note`: "... (note: ...)".',
    json_schema_extra={"deprecated": True},
)


class ReviewRejection(Strict):
    """A decision. Who decided is the caller's key (or token subject), never a stated name."""

    reviewer: OneLine | None = _REVIEWER
    note: str | None = Field(None, max_length=1000)


class ReviewApproval(ReviewRejection):
    edits: EmailEdits | None = None


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
