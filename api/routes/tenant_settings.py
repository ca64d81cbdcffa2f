"""The tenant's own settings: sender, postal address, time zone, brand policy and limits.
Delivery (providers, sending rate) has its own route, api/routes/delivery.py."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.audit import audit_detail
from api.deps import SessionDep, SettingsDep, TenantDep
from api.schemas.tenant_settings import TenantSettingsPatch, TenantSettingsPublic
from tailor.accounts.settings import settings_change
from tailor.config import Settings
from tailor.models import Tenant
from tailor.personalise.brand import BrandPolicy
from tailor.store.tenants import update_settings

router = APIRouter(prefix="/v1/tenant/settings", tags=["settings"])


def _public(tenant: Tenant, settings: Settings) -> TenantSettingsPublic:
    budget = tenant.llm_daily_budget_usd
    return TenantSettingsPublic(
        postal_address=tenant.postal_address,
        from_name=tenant.from_name,
        from_email=tenant.from_email,
        timezone=tenant.timezone,
        brand_policy=BrandPolicy.of(tenant.brand_policy),
        daily_email_limit=tenant.daily_email_limit,
        llm_daily_budget_usd=budget,
        effective_llm_daily_budget_usd=budget
        if budget is not None
        else settings.llm_daily_budget_usd,
        tracking_enabled=tenant.tracking_enabled,
        attribution_click_hours=tenant.attribution_click_hours,
        attribution_open_hours=tenant.attribution_open_hours,
        pause_complaint_rate=tenant.pause_complaint_rate,
        pause_bounce_rate=tenant.pause_bounce_rate,
        pause_min_sent=tenant.pause_min_sent,
    )


@router.get("", response_model=TenantSettingsPublic)
async def read_settings(tenant: TenantDep, settings: SettingsDep) -> TenantSettingsPublic:
    return _public(tenant, settings)


@router.patch("", response_model=TenantSettingsPublic)
async def change_settings(
    body: TenantSettingsPatch,
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    settings: SettingsDep,
) -> TenantSettingsPublic:
    """Change the named fields only; all or nothing. The audit log records the names of the
    fields that changed, not their values."""
    change = settings_change(tenant, body.model_dump(exclude_unset=True))
    await update_settings(session=session, tenant=tenant, values=change.values)
    await session.commit()
    audit_detail(request, changed=change.changed)
    return _public(tenant, settings)
