"""The tenant's delivery settings: its providers in failover order and its sending rate."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SessionDep, SettingsDep, TenantDep
from api.schemas.delivery import DeliveryIn, DeliveryOut
from tailor.config import Settings
from tailor.models import Tenant
from tailor.store.tenants import set_delivery

router = APIRouter(prefix="/v1/tenant/delivery", tags=["delivery"])


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


# Named for the route, not the function: the operation id stays `update_v1_tenant_delivery_put`.
@router.put("", response_model=DeliveryOut, name="update")
async def update_delivery(
    body: DeliveryIn, session: SessionDep, tenant: TenantDep, settings: SettingsDep
) -> DeliveryOut:
    """Applies to campaigns started from now on; running ones keep what they started with.
    A provider must also be configured on the workers (its TAILOR_* credentials)."""
    await set_delivery(
        session=session,
        tenant=tenant,
        providers=body.providers,
        send_rate_per_s=body.send_rate_per_s,
    )
    await session.commit()
    return _out(tenant, settings)
