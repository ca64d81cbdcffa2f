"""Loads the synthetic demo tenant, catalog, template and contacts (with consent) into a store.

Used by ``tailor demo``, ``tailor bench`` and the tests. Contacts go in with bulk Core inserts in
batches, each batch in one transaction with its consent rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tailor.consent.ledger import LedgerEntry
from tailor.db import Database
from tailor.demo.data import DEMO_TEMPLATE, DEMO_TENANT, demo_catalog, demo_contacts
from tailor.models import ConsentStatus, Product, Tenant, utcnow
from tailor.store.catalog import add_missing_products
from tailor.store.imports import import_contacts
from tailor.store.templates import add_version, get_or_create_template, list_versions
from tailor.store.tenants import upsert_tenant

BATCH = 2000
SHOP_URL = "https://shop.example.com"


@dataclass(frozen=True)
class SeededTenant:
    tenant_id: str
    template_version_id: int
    contacts: int
    consenting: int


async def seed_demo(
    db: Database,
    *,
    contacts: int,
    now: datetime | None = None,
    seed: int = 7,
    tenant_id: str = DEMO_TENANT["id"],
    on_progress: Callable[[int], None] | None = None,
) -> SeededTenant:
    """Idempotent: reruns upsert the same tenant, catalog and template, and add only contacts
    that are not there yet (matched by email)."""
    now = now or utcnow()
    async with db.session() as session:
        tenant = Tenant.model_validate({**DEMO_TENANT, "id": tenant_id, "website": SHOP_URL})
        await upsert_tenant(session=session, tenant=tenant)
        template = await get_or_create_template(
            session=session, tenant_id=tenant_id, name=DEMO_TEMPLATE["name"]
        )
        versions = await list_versions(session=session, template_id=template.id or 0)
        fields = {
            k: DEMO_TEMPLATE[k] for k in ("subject", "preheader", "body", "cta_text", "cta_url")
        }
        latest = versions[-1] if versions else None
        if latest is None or any(getattr(latest, k) != v for k, v in fields.items()):
            latest = await add_version(session=session, template=template, **fields)
        version_id = latest.id or 0
        stored = await session.get(Tenant, tenant_id)
        if stored is not None and stored.default_template_version_id is None:
            stored.default_template_version_id = version_id
        await add_missing_products(
            session=session,
            tenant_id=tenant_id,
            products=(
                Product(tenant_id=tenant_id, sku=p.sku, name=p.name, category=p.category,
                        price_cents=p.price_cents, url=p.url)
                for p in demo_catalog()
            ),
        )  # fmt: skip

    consenting = 0
    batch: list[dict[str, object]] = []
    consent_of: dict[str, bool] = {}
    done = 0

    async def flush() -> None:
        nonlocal consenting, done
        emails = [str(row["email"]) for row in batch]
        async with db.write() as conn:
            await import_contacts(
                conn,
                tenant_id=tenant_id,
                rows=batch,
                granted={e for e in emails if consent_of[e]},
                consent=LedgerEntry(
                    tenant_id=tenant_id,
                    contact_id=0,
                    status=ConsentStatus.GRANTED.value,
                    source="signup-form",
                    method="double-opt-in",
                    wording_version="newsletter-v2",
                    recorded_by="demo-seed",
                    recorded_at=now,
                ),  # fmt: skip
            )
        consenting += sum(consent_of[e] for e in emails)
        done += len(batch)
        batch.clear()
        consent_of.clear()
        if on_progress is not None:
            on_progress(done)

    for c in demo_contacts(contacts, seed=seed, now=now):
        consent_of[c.email] = c.consent
        batch.append(
            {
                "tenant_id": tenant_id,
                "email": c.email,
                "first_name": c.first_name,
                "last_name": c.last_name,
                "timezone": c.timezone,
                "locale": c.locale,
                "device": c.device,
                "engagement_score": c.engagement_score,
                "last_open_at": c.last_open_at,
                "purchase_frequency": c.purchase_frequency,
                "preferred_categories": c.preferred_categories,
                "cart_items": c.cart_items,
                "browse_items": c.browse_items,
                "created_at": now,
                "updated_at": now,
            }
        )
        if len(batch) >= BATCH:
            await flush()
    if batch:
        await flush()
    return SeededTenant(tenant_id, version_id, contacts, consenting)
