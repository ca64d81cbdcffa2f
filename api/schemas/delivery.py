"""The tenant's delivery settings: its providers in failover order and its sending rate."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from api.schemas.base import Strict

Provider = Literal["smtp", "sendgrid", "mailgun", "ses"]


class DeliveryIn(Strict):
    providers: list[Provider] | None = Field(
        None, description="Failover order, e.g. [sendgrid, mailgun, ses]; null: the default."
    )
    send_rate_per_s: float | None = Field(
        None, gt=0, description="Most emails per second; null: the default."
    )

    @field_validator("providers")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError("name each provider once, at least one")
        return value


class DeliveryOut(BaseModel):
    providers: list[str] | None
    send_rate_per_s: float | None
    effective_providers: list[str] = Field(description="What new campaigns use.")
    effective_send_rate_per_s: float | None
