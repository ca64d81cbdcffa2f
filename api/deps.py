"""Typed dependencies: the store session, the caller (principal) and their tenant, settings and
campaign control."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from sqlalchemy.ext.asyncio import AsyncSession  # the type of SessionDep, nothing more
from temporalio.client import Client

from api.access import BASIC_AUTH_ROUTES, roles_for
from tailor.accounts.keys import authenticate_key, looks_like_key
from tailor.accounts.oidc import OidcVerifier
from tailor.accounts.principal import Principal
from tailor.config import Settings
from tailor.db import Database
from tailor.errors import NotFound
from tailor.journeys.triggers import TriggerAgent
from tailor.models import Tenant, utcnow
from tailor.profiles.cache import FeatureCache
from tailor.store import tenants
from tailor.store.api_keys import touch_key
from tailor.temporal.ab_tests import AbTestControl
from tailor.temporal.campaigns import CampaignControl
from tailor.temporal.client import connect
from tailor.temporal.erasure import ErasureControl
from tailor.temporal.journeys import JourneyControl

_LAST_USE_EVERY = timedelta(minutes=1)
_bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`tlr_...`, from `tailor tenant create` or `POST /v1/keys`), or a "
    "JWT from the configured OIDC issuer.",
)
_basic = HTTPBasic(
    auto_error=False,
    description="Segment-style ingestion only: an ingest key as the username, no password "
    "(where Segment puts its write key).",
)


class TemporalGateway:
    """One Temporal client per app, connected on first use so the API starts without it."""

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._client = client
        self._lock = asyncio.Lock()

    async def control(self) -> CampaignControl:
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await connect(self._settings)
                except RuntimeError as exc:
                    raise HTTPException(
                        503,
                        f"Temporal is unreachable at {self._settings.temporal_address}: start it "
                        "with `tailor server` or set TAILOR_TEMPORAL_ADDRESS",
                    ) from exc
        return CampaignControl(self._client, self._settings)

    async def journeys(self) -> JourneyControl:
        await self.control()  # connects, or answers 503 naming the fix
        assert self._client is not None
        return JourneyControl(self._client, self._settings)

    async def erasures(self) -> ErasureControl:
        await self.control()  # connects, or answers 503 naming the fix
        assert self._client is not None
        return ErasureControl(self._client, self._settings)

    async def ab_tests(self) -> AbTestControl:
        await self.control()  # connects, or answers 503 naming the fix
        assert self._client is not None
        return AbTestControl(self._client, self._settings)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_session(db: Annotated[Database, Depends(get_db)]) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed if the handler returns, rolled back if it raises.
    A handler may commit earlier, e.g. before it calls Temporal."""
    async with db.request_session() as session:
        yield session


# Committed before the response is sent ("function" scope): by default FastAPI runs the code after
# a dependency's yield once the response has gone, so a client could be told 201 and then not
# find what it made, or be told 201 for a write whose commit then fails.
_Session = Annotated[AsyncSession, Depends(get_session, scope="function")]


def get_triggers(request: Request) -> TriggerAgent:
    triggers: TriggerAgent = request.app.state.triggers
    return triggers


def get_feature_cache(request: Request) -> FeatureCache | None:
    """The Redis profile cache to invalidate after a write commits; None without Redis."""
    features: FeatureCache | None = request.app.state.features
    return features


def get_gateway(request: Request) -> TemporalGateway:
    gateway: TemporalGateway = request.app.state.temporal
    return gateway


async def get_control(gateway: Annotated[TemporalGateway, Depends(get_gateway)]) -> CampaignControl:
    return await gateway.control()


def _route_path(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", request.url.path))


async def get_principal(
    request: Request,
    db: Annotated[Database, Depends(get_db)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> Principal | None:
    """The caller an API key or OIDC token proves (None: no credentials, or ones that prove
    nothing).

    Reads on a connection of its own, so that authenticating does not open the request's
    write transaction (on SQLite, the database's one write lock), and records a key's last
    use in a short transaction of its own, at most once a minute."""
    secret = bearer.credentials if bearer is not None else None
    if secret is None and basic is not None and _route_path(request) in BASIC_AUTH_ROUTES:
        secret = basic.username
    if not secret:
        return None
    oidc: OidcVerifier | None = getattr(request.app.state, "oidc", None)
    async with db.read_session() as session:
        if bearer is not None and oidc is not None and not looks_like_key(secret):
            principal = await _token_principal(session, oidc, secret)
        else:
            principal = await authenticate_key(session=session, secret=secret)
    if principal is None:
        return None
    now = utcnow()
    if principal.key_id is not None and (
        principal.last_used_at is None or now - principal.last_used_at >= _LAST_USE_EVERY
    ):
        async with db.write() as conn:
            await touch_key(conn, key_id=principal.key_id, now=now, every=_LAST_USE_EVERY)
    request.state.principal = principal
    return principal


async def _token_principal(
    session: AsyncSession, oidc: OidcVerifier, token: str
) -> Principal | None:
    """A token's principal, if its tenant exists: unlike a key's, a token's tenant is only a
    claim, and a tenant that does not exist must not get as far as a route."""
    principal = await oidc.verify(token)
    if principal is None or principal.tenant_id is None:
        return None
    try:
        await tenants.get_tenant(session=session, tenant_id=principal.tenant_id)
    except NotFound:
        return None
    return principal


async def authorize(
    request: Request, principal: Annotated[Principal | None, Depends(get_principal)]
) -> None:
    """The app-wide gate: the route's row in api/access.py against the caller's role."""
    allowed = roles_for(request.method, _route_path(request))
    if allowed is None:
        return
    if principal is None:
        raise HTTPException(
            401,
            "missing or invalid credentials: send `Authorization: Bearer <API key>` "
            "(create one with `tailor tenant create` or `tailor key create`)",
            headers={"WWW-Authenticate": 'Bearer realm="tailor"'},
        )
    if principal.role not in allowed:
        needed = ", ".join(sorted(allowed))
        raise HTTPException(
            403,
            f"a key with role {principal.role.value!r} may not call {request.method} "
            f"{_route_path(request)}; it needs one of: {needed}",
        )


async def get_caller(principal: Annotated[Principal | None, Depends(get_principal)]) -> Principal:
    """The authenticated caller of a non-public route (``authorize`` has already let it in)."""
    if principal is None:  # pragma: no cover - authorize answers 401 first
        raise HTTPException(401, "missing or invalid credentials")
    return principal


async def get_tenant(
    session: _Session,
    caller: Annotated[Principal, Depends(get_caller)],
) -> Tenant:
    """The caller's tenant: the one its key or token belongs to, never one the request names."""
    if caller.tenant_id is None:
        raise HTTPException(403, "platform keys may only onboard tenants (POST /v1/platform/...)")
    try:
        return await tenants.get_tenant(session=session, tenant_id=caller.tenant_id)
    except NotFound as exc:  # the tenant was deleted after its key was issued
        raise HTTPException(401, "missing or invalid credentials") from exc


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = _Session
TenantDep = Annotated[Tenant, Depends(get_tenant)]
CallerDep = Annotated[Principal, Depends(get_caller)]
ControlDep = Annotated[CampaignControl, Depends(get_control)]
GatewayDep = Annotated[TemporalGateway, Depends(get_gateway)]
DatabaseDep = Annotated[Database, Depends(get_db)]
TriggersDep = Annotated[TriggerAgent, Depends(get_triggers)]
FeatureCacheDep = Annotated[FeatureCache | None, Depends(get_feature_cache)]
