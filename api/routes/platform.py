"""Onboarding shops: the platform operator's route (platform keys, from `tailor platform-key`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from api.deps import CallerDep, SessionDep
from api.openapi import problems
from api.schemas.accounts import KeyIssued, KeyPublic, TenantIn, TenantOnboarded, TenantPublic
from tailor.accounts.onboarding import TenantExists, TenantSpec, onboard_tenant

router = APIRouter(prefix="/v1/platform", tags=["platform"])


@router.post("/tenants", response_model=TenantOnboarded, status_code=201, responses=problems(409))
async def create_tenant(body: TenantIn, session: SessionDep, caller: CallerDep) -> TenantOnboarded:
    """A new tenant and its first admin key (its secret is in this response only)."""
    try:
        onboarded = await onboard_tenant(
            session=session, spec=TenantSpec.model_validate(body.model_dump()),
            created_by=caller.actor,
        )  # fmt: skip
    except TenantExists:
        raise HTTPException(409, f"tenant id {body.id!r} is taken; choose another") from None
    key = onboarded.admin_key
    return TenantOnboarded(
        tenant=TenantPublic.model_validate(onboarded.tenant, from_attributes=True),
        admin_key=KeyIssued(
            **KeyPublic.model_validate(key.key, from_attributes=True).model_dump(),
            secret=key.secret,
        ),
    )
