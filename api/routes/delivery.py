"""The tenant's delivery settings: its providers in failover order and its sending rate."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator

from api.deps import SessionDep, SettingsDep, TenantDep
from api.schemas import Strict
from tailor.config import Settings
from tailor.models import Tenant

router = APIRouter(prefix="/v1/tenant/delivery", tags=["delivery"])

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


def _out(tenant: Tenant, settings: Settings) -> DeliveryOut:
    return DeliveryOut(
        providers=tenant.providers,
        send_rate_per_s=tenant.send_rate_per_s,
        effective_providers=tenant.providers or settings.providers,
        effective_send_rate_per_s=tenant.send_rate_per_s or settings.send_rate_per_s,
    )


@router.get("", response_model=DeliveryOut)
async def read(tenant: TenantDep, settings: SettingsDep) -> DeliveryOut:
    return _out(tenant, settings)


@router.put("", response_model=DeliveryOut)
async def update(
    body: DeliveryIn, session: SessionDep, tenant: TenantDep, settings: SettingsDep
) -> DeliveryOut:
    """Applies to campaigns started from now on; running ones keep what they started with.
    A provider must also be configured on the workers (its TAILOR_* credentials)."""
    tenant.providers = list(body.providers) if body.providers is not None else None
    tenant.send_rate_per_s = body.send_rate_per_s
    session.add(tenant)
    await session.commit()
    return _out(tenant, settings)
