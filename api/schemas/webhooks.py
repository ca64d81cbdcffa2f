"""What an ESP webhook request is answered: how many of its events were taken."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WebhookCounts(BaseModel):
    accepted: int = Field(description="Events stored now (they take effect once).")
    duplicates: int = Field(description="Events stored before, or twice in this request.")
    ignored: int = Field(description="Event types Tailor does not track (e.g. processed).")
