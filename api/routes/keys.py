"""A tenant's API keys: issue (the secret shown once), list, revoke. Admins only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import CallerDep, SessionDep, TenantDep
from api.schemas.accounts import KeyIn, KeyIssued, KeyPublic, KeysPublic
from tailor.accounts.keys import issue_key
from tailor.models import Role, utcnow
from tailor.store.api_keys import keys_of, revoke_key

router = APIRouter(prefix="/v1/keys", tags=["keys"])
KeyId = Annotated[str, Path(max_length=32, pattern=r"^key_[0-9a-f]{16}$")]


@router.get("", response_model=KeysPublic)
async def list_keys(session: SessionDep, tenant: TenantDep) -> KeysPublic:
    """Every key of the tenant, revoked ones included; never a secret."""
    keys = await keys_of(session=session, tenant_id=tenant.id)
    return KeysPublic(items=[KeyPublic.model_validate(k, from_attributes=True) for k in keys])


@router.post("", response_model=KeyIssued, status_code=201)
async def create_key(
    body: KeyIn, session: SessionDep, tenant: TenantDep, caller: CallerDep
) -> KeyIssued:
    """A new key with a role. The response holds the secret: it is never shown again."""
    issued = await issue_key(
        session=session, tenant_id=tenant.id, role=Role(body.role), name=body.name,
        created_by=caller.actor,
    )  # fmt: skip
    return KeyIssued(
        **KeyPublic.model_validate(issued.key, from_attributes=True).model_dump(),
        secret=issued.secret,
    )


@router.post("/{key_id}/revoke", response_model=KeyPublic)
async def revoke(key_id: KeyId, session: SessionDep, tenant: TenantDep) -> KeyPublic:
    """The key stops working on its next request. Revoking twice keeps the first time."""
    key = await revoke_key(session=session, tenant_id=tenant.id, key_id=key_id, now=utcnow())
    return KeyPublic.model_validate(key, from_attributes=True)
