"""Loads the synthetic demo tenant, catalog, template and contacts (with consent) into a store.

Used by ``tailor demo``, ``tailor bench`` and the tests. Contacts go in with bulk Core inserts in
batches, each batch in one transaction with its consent rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlmodel import col

from tailor.db import Database
from tailor.demo.data import DEMO_TEMPLATE, DEMO_TENANT, demo_catalog, demo_contacts
from tailor.models import ConsentRecord, ConsentStatus, Contact, Product, Tenant, utcnow
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
        have = set(
            (
                await session.execute(
                    select(Product.sku).where(col(Product.tenant_id) == tenant_id)  # type: ignore[call-overload]
                )
            ).scalars()
        )
        for product in demo_catalog():
            if product.sku not in have:
                session.add(
                    Product(
                        tenant_id=tenant_id,
                        sku=product.sku,
                        name=product.name,
                        category=product.category,
                        price_cents=product.price_cents,
                        url=product.url,
                    )
                )

    consenting = 0
    batch: list[dict[str, object]] = []
    consent_of: dict[str, bool] = {}
    done = 0

    async def flush() -> None:
        nonlocal consenting, done
        async with db.write() as conn:
            emails = [str(row["email"]) for row in batch]
            existing = set(
                (
                    await conn.execute(
                        select(Contact.email).where(  # type: ignore[call-overload]
                            col(Contact.tenant_id) == tenant_id, col(Contact.email).in_(emails)
                        )
                    )
                ).scalars()
            )
            fresh = [row for row in batch if row["email"] not in existing]
            if fresh:
                await conn.execute(insert(Contact), fresh)
                ids: dict[str, int] = dict(
                    (
                        await conn.execute(
                            select(Contact.email, Contact.id).where(  # type: ignore[call-overload]
                                col(Contact.tenant_id) == tenant_id,
                                col(Contact.email).in_([r["email"] for r in fresh]),
                            )
                        )
                    ).all()
                )
                grants = [
                    {
                        "tenant_id": tenant_id,
                        "contact_id": ids[str(row["email"])],
                        "channel": "email",
                        "status": ConsentStatus.GRANTED.value,
                        "source": "signup-form",
                        "method": "double-opt-in",
                        "wording_version": "newsletter-v2",
                        "recorded_by": "demo-seed",
                        "recorded_at": now,
                    }
                    for row in fresh
                    if consent_of[str(row["email"])]
                ]
                if grants:
                    await conn.execute(insert(ConsentRecord), grants)
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
