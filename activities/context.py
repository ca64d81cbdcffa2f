"""What every chunk of one campaign needs, loaded once per worker and campaign."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select

from activities.brand import BrandPolicy
from activities.executor import Catalog
from tailor.db import Database
from tailor.errors import NotFound
from tailor.models import Product, TemplateVersion, Tenant
from tailor.store.campaigns import get_campaign
from tailor.store.templates import get_version
from tailor.store.tenants import get_tenant


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

    @property
    def sender_domain(self) -> str:
        return self.tenant.from_email.rsplit("@", 1)[-1]


class CampaignContexts:
    """A small LRU: templates are immutable and a campaign's segment never changes."""

    def __init__(self, db: Database, size: int = 64) -> None:
        self._db = db
        self._size = size
        self._cache: OrderedDict[str, CampaignContext] = OrderedDict()

    async def get(self, campaign_id: str) -> CampaignContext:
        ctx = self._cache.get(campaign_id)
        if ctx is not None:
            self._cache.move_to_end(campaign_id)
            return ctx
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
            products = list(
                (
                    await session.execute(
                        select(Product).where(col(Product.tenant_id) == campaign.tenant_id)
                    )
                ).scalars()
            )
        ctx = CampaignContext(
            campaign_id=campaign.id,
            tenant=tenant,
            segment=campaign.segment,
            prompt_version=campaign.prompt_version,
            version=version,
            default_version=default_version,
            goal=campaign.goal,
            brand=BrandPolicy.of(tenant.brand_policy),
            catalog=Catalog(
                products, tenant.website or f"https://{tenant.from_email.split('@')[-1]}"
            ),
        )
        self._cache[campaign_id] = ctx
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return ctx
