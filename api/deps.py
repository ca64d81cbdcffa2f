"""Typed dependencies: the store session, the tenant, settings and campaign control."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession  # the type of SessionDep, nothing more
from temporalio.client import Client

from tailor.config import Settings
from tailor.db import Database
from tailor.errors import NotFound
from tailor.journeys.triggers import TriggerAgent
from tailor.models import Tenant
from tailor.profiles.cache import FeatureCache
from tailor.store import tenants
from tailor.temporal.ab_tests import AbTestControl
from tailor.temporal.campaigns import CampaignControl
from tailor.temporal.client import connect
from tailor.temporal.journeys import JourneyControl


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


async def get_tenant(
    session: Annotated[AsyncSession, Depends(get_session)],
    x_tailor_tenant: Annotated[str, Header(description="Tenant id, e.g. `demo`.")],
) -> Tenant:
    try:
        return await tenants.get_tenant(session=session, tenant_id=x_tailor_tenant)
    except NotFound as exc:
        raise HTTPException(
            404, f"tenant {x_tailor_tenant!r} not found (header X-Tailor-Tenant)"
        ) from exc


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
TenantDep = Annotated[Tenant, Depends(get_tenant)]
ControlDep = Annotated[CampaignControl, Depends(get_control)]
GatewayDep = Annotated[TemporalGateway, Depends(get_gateway)]
DatabaseDep = Annotated[Database, Depends(get_db)]
TriggersDep = Annotated[TriggerAgent, Depends(get_triggers)]
FeatureCacheDep = Annotated[FeatureCache | None, Depends(get_feature_cache)]
