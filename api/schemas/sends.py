"""A campaign's sends, as the API lists them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class SendPublic(BaseModel):
    """One email of a campaign: to whom (by id), how it was written, and what became of it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    campaign_id: str
    contact_id: int
    status: str  # held_out: in the campaign's control group, deliberately not sent
    control: bool = False  # in the campaign's control group (holdout)
    generator: str | None
    message_id: str
    error: str | None
    sent_at: datetime | None
