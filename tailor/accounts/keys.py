"""API key secrets: minted at random, shown once, kept only as a SHA-256 digest.

A key reads ``tlr_<prefix>_<secret>``. The prefix (12 hex characters) finds the row; the digest
of the whole key, compared in constant time, proves it. A digest without salt is enough here: the
secret is 256 random bits, so there is no dictionary to try.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tailor.accounts.principal import Principal
from tailor.models import ApiKey, Role, utcnow
from tailor.store.api_keys import add_key, key_by_prefix, keys_of, revoke_key

_FORMAT = re.compile(r"tlr_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class IssuedKey:
    """A new key: ``secret`` is the only copy there will ever be."""

    key: ApiKey
    secret: str


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_key(value: str) -> bool:
    return _FORMAT.fullmatch(value) is not None


async def issue_key(
    *,
    session: AsyncSession,
    tenant_id: str | None,
    role: Role,
    name: str,
    created_by: str,
) -> IssuedKey:
    """Mint a key for a tenant (None and role platform: a platform key)."""
    if (tenant_id is None) != (role is Role.PLATFORM):
        raise ValueError("platform keys, and only they, belong to no tenant")
    prefix = secrets.token_hex(6)
    secret = f"tlr_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        id=f"key_{secrets.token_hex(8)}",
        tenant_id=tenant_id,
        name=name,
        role=role.value,
        prefix=prefix,
        secret_sha256=digest(secret),
        created_by=created_by,
        created_at=utcnow(),
    )
    await add_key(session=session, key=key)
    return IssuedKey(key=key, secret=secret)


async def reissue_key(
    *, session: AsyncSession, tenant_id: str, role: Role, name: str, created_by: str
) -> IssuedKey:
    """A fresh key by this name, the tenant's earlier live keys of that name revoked: for tools
    (``tailor demo``) that print a new key each run and leave one working."""
    now = utcnow()
    for key in await keys_of(session=session, tenant_id=tenant_id):
        if key.name == name and key.revoked_at is None:
            await revoke_key(session=session, tenant_id=tenant_id, key_id=key.id, now=now)
    return await issue_key(
        session=session, tenant_id=tenant_id, role=role, name=name, created_by=created_by
    )


async def authenticate_key(*, session: AsyncSession, secret: str) -> Principal | None:
    """The principal a key stands for; None if it is malformed, unknown or revoked."""
    match = _FORMAT.fullmatch(secret)
    if match is None:
        return None
    key = await key_by_prefix(session=session, prefix=match.group(1))
    if key is None or not hmac.compare_digest(key.secret_sha256, digest(secret)):
        return None
    if key.revoked_at is not None:
        return None
    return Principal(
        tenant_id=key.tenant_id, role=Role(key.role), actor=key.id, kind="key", key_id=key.id,
        last_used_at=key.last_used_at,
    )  # fmt: skip
