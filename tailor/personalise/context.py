"""A campaign as personalising and sending its emails needs it, loaded once per worker and
campaign: tenant, template versions, catalog, brand, segment and send-time rounds."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement

from tailor.db import Database
from tailor.errors import NotFound
from tailor.holdout import HoldoutPlan
from tailor.models import Generator, TemplateVersion, Tenant
from tailor.personalise.brand import BrandPolicy
from tailor.personalise.rules import Catalog
from tailor.send_time import fixed_local_hour
from tailor.store.campaigns import get_campaign
from tailor.store.catalog import products_of
from tailor.store.profiles import tenant_timezones
from tailor.store.segments import due_filter
from tailor.store.sends import segment_contact_ids
from tailor.store.templates import get_version
from tailor.store.tenants import get_tenant

TIMEZONES_TTL_S = 300.0
# How stale a running campaign's view of its tenant (settings, catalog) may be.
CONTEXT_TTL_S = 60.0


@dataclass(frozen=True)
class CampaignContext:
    campaign_id: str
    tenant: Tenant
    segment: dict[str, Any]
    prompt_version: str
    version: TemplateVersion
    catalog: Catalog
    brand: BrandPolicy
    # The tenant's default template, for recipients the campaign's template cannot render for.
    default_version: TemplateVersion | None = None
    # A journey email's goal ("welcome_1", "milestone:birthday"); None for batch campaigns.
    goal: str | None = None
    # Send-time optimisation: the hour (UTC, ISO 8601) this chunk sends for; None: send now.
    send_round: str | None = None
    send_time: str = "now"  # the campaign's choice: now, best_hour, or a local "HH:00"
    # Added to each send's "why this email" (a journey's run, step and send time).
    explain_extra: dict[str, Any] | None = None
    campaign_tracking: bool = True  # the campaign's switch (the tenant's is on ``tenant``)
    # The control group (``tailor.holdout``): who is in it, and whether they get mail.
    holdout: HoldoutPlan = HoldoutPlan("")
    # rules: the rules tier writes every email (the plain arm of an AI vs plain A/B test).
    generator: Generator = Generator.AUTO

    @property
    def rules_only(self) -> bool:
        return self.generator == Generator.RULES

    @property
    def tracked(self) -> bool:
        """Open and click tracking: on only when both the tenant's and the campaign's are."""
        return self.tenant.tracking_enabled and self.campaign_tracking

    @property
    def sender_domain(self) -> str:
        return self.tenant.from_email.rsplit("@", 1)[-1]


class CampaignContexts:
    """A small LRU of campaign contexts, each read again after ``ttl_s``: templates are immutable
    and a campaign's segment never changes, but the tenant's settings and catalog do (a removed
    product must stop being recommended and priced in campaigns already running)."""

    def __init__(
        self,
        db: Database,
        size: int = 64,
        ttl_s: float = CONTEXT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._size = size
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, CampaignContext]] = OrderedDict()
        self._timezones: dict[str, tuple[float, list[str]]] = {}

    async def _zones_of(self, tenant_id: str) -> list[str]:
        """The tenant's contacts' timezones, re-read every few minutes (send-time rounds)."""
        cached = self._timezones.get(tenant_id)
        if cached is not None and time.monotonic() - cached[0] < TIMEZONES_TTL_S:
            return cached[1]
        async with self._db.read() as conn:
            names = await tenant_timezones(conn, tenant_id=tenant_id)
        self._timezones[tenant_id] = (time.monotonic(), names)
        return names

    async def _due(
        self, tenant_id: str, due_at: str | None, send_time: str = "best_hour"
    ) -> ColumnElement[bool] | None:
        """The send-time filter for a round at ``due_at``; None when sending to everyone."""
        if due_at is None:
            return None
        return due_filter(
            await self._zones_of(tenant_id),
            datetime.fromisoformat(due_at),
            fixed_local_hour(send_time),
        )

    async def audience_page(
        self,
        ctx: CampaignContext,
        *,
        due_at: str | None,
        after_contact_id: int,
        limit: int,
        up_to_contact_id: int | None = None,
    ) -> list[int]:
        """The next contact ids of the campaign's segment after the cursor, ascending; in a
        send-time round (``due_at``), only the people due then."""
        due = await self._due(ctx.tenant.id, due_at, ctx.send_time)
        async with self._db.read() as conn:
            return await segment_contact_ids(
                conn, tenant_id=ctx.tenant.id, segment=ctx.segment,
                after_contact_id=after_contact_id, up_to_contact_id=up_to_contact_id,
                limit=limit, due=due,
            )  # fmt: skip

    async def get(self, campaign_id: str) -> CampaignContext:
        cached = self._cache.get(campaign_id)
        if cached is not None and self._clock() - cached[0] < self._ttl_s:
            self._cache.move_to_end(campaign_id)
            return cached[1]
        async with self._db.read_session() as session:
            campaign = await get_campaign(session=session, campaign_id=campaign_id)
            tenant = await get_tenant(session=session, tenant_id=campaign.tenant_id)
            _, version = await get_version(
                session=session,
                tenant_id=campaign.tenant_id,
                version_id=campaign.template_version_id,
            )
            default_version = None
            default_id = tenant.default_template_version_id
            if default_id is not None and default_id != version.id:
                try:
                    _, default_version = await get_version(
                        session=session, tenant_id=campaign.tenant_id, version_id=default_id
                    )
                except NotFound:
                    default_version = None
            products = await products_of(session=session, tenant_id=campaign.tenant_id)
        ctx = CampaignContext(
            campaign_id=campaign.id,
            tenant=tenant,
            segment=campaign.segment,
            prompt_version=campaign.prompt_version,
            version=version,
            default_version=default_version,
            goal=campaign.goal,
            send_time=campaign.send_time,
            campaign_tracking=campaign.tracking_enabled,
            holdout=HoldoutPlan.of(campaign),
            generator=Generator(campaign.generator),
            brand=BrandPolicy.of(tenant.brand_policy),
            catalog=Catalog(
                products, tenant.website or f"https://{tenant.from_email.split('@')[-1]}"
            ),
        )
        self._cache[campaign_id] = (self._clock(), ctx)
        self._cache.move_to_end(campaign_id)
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return ctx
