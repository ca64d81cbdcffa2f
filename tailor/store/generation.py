"""LLM generation's records: the content cache shared by all workers, every call and cache
hit with its cost, PII incidents, and what generated a campaign's emails."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import case, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from tailor.models import (
    GenerationCache,
    LlmUsage,
    PiiIncident,
    Send,
    SendStatus,
    Tenant,
    utcnow,
)


@dataclass(frozen=True)
class CachedContent:
    provider: str
    model: str
    content: dict[str, Any]


async def cached_content(conn: AsyncConnection, *, key: str) -> CachedContent | None:
    row = (
        await conn.execute(
            select(GenerationCache.provider, GenerationCache.model,  # type: ignore[call-overload]
                   GenerationCache.content).where(col(GenerationCache.key) == key)
        )
    ).first()  # fmt: skip
    return None if row is None else CachedContent(row[0], row[1], row[2])


async def cache_content(
    conn: AsyncConnection,
    *,
    key: str,
    tenant_id: str,
    template_version_id: int | None,
    prompt_version: str,
    cached: CachedContent,
) -> None:
    """Keep a cluster's content; a no-op if another worker wrote the same key meanwhile."""
    exists = (
        await conn.execute(select(GenerationCache.key).where(  # type: ignore[call-overload]
            col(GenerationCache.key) == key))
    ).first()  # fmt: skip
    if exists is None:
        await conn.execute(
            insert(GenerationCache).values(
                key=key, tenant_id=tenant_id, template_version_id=template_version_id,
                prompt_version=prompt_version, provider=cached.provider, model=cached.model,
                content=cached.content, created_at=utcnow(),
            )
        )  # fmt: skip


async def record_usage(conn: AsyncConnection, *, usage: Sequence[dict[str, object]]) -> None:
    """``llm_usage`` rows: one per call (tokens, dollars) or cache hit."""
    if usage:
        await conn.execute(insert(LlmUsage), list(usage))


async def spent_today(conn: AsyncConnection, *, tenant_id: str, day: str) -> float:
    """Dollars of LLM calls a tenant made on ``day`` (ISO date)."""
    spent = await conn.execute(
        select(func.coalesce(func.sum(LlmUsage.cost_usd), 0.0)).where(
            col(LlmUsage.tenant_id) == tenant_id, col(LlmUsage.day) == day
        )
    )
    return float(spent.scalar_one())


async def spend_by_tenant(
    conn: AsyncConnection, *, day: str
) -> list[tuple[str, float | None, float]]:
    """Each tenant's own daily LLM cap (None: the service default) and its spend on ``day``."""
    spent = (
        select(
            col(LlmUsage.tenant_id).label("tenant_id"), func.sum(LlmUsage.cost_usd).label("usd")
        )  # fmt: skip
        .where(col(LlmUsage.day) == day)
        .group_by(col(LlmUsage.tenant_id))
        .subquery()
    )
    rows = await conn.execute(
        select(col(Tenant.id), col(Tenant.llm_daily_budget_usd), func.coalesce(spent.c.usd, 0.0))
        .outerjoin(spent, spent.c.tenant_id == col(Tenant.id))
        .order_by(col(Tenant.id))
    )
    return [(str(t), None if cap is None else float(cap), float(usd)) for t, cap, usd in rows]


async def record_pii_incident(
    conn: AsyncConnection, *, tenant_id: str, campaign_id: str, source: str, entities: list[str]
) -> None:
    """PII found in generated content and redacted: the entity types, never the values."""
    await conn.execute(
        insert(PiiIncident).values(
            tenant_id=tenant_id, campaign_id=campaign_id, source=source, entities=entities,
            action="redacted", created_at=utcnow(),
        )
    )  # fmt: skip


async def generation_stats(conn: AsyncConnection, *, campaign_id: str) -> dict[str, Any]:
    by_generator: dict[str | None, int] = dict(
        (
            await conn.execute(
                select(Send.generator, func.count())  # type: ignore[call-overload]
                .where(col(Send.campaign_id) == campaign_id,
                       col(Send.status) == SendStatus.SENT.value)
                .group_by(col(Send.generator))
            )
        ).all()
    )  # fmt: skip
    calls, hits, cost = (
        await conn.execute(
            select(
                func.count(case((col(LlmUsage.cache_hit).is_(False), 1))),
                func.count(case((col(LlmUsage.cache_hit).is_(True), 1))),
                func.coalesce(func.sum(LlmUsage.cost_usd), 0.0),
            ).where(col(LlmUsage.campaign_id) == campaign_id)
        )
    ).one()
    sent = sum(by_generator.values())
    lookups = calls + hits
    return {
        "by_generator": {str(k or "unknown"): int(v) for k, v in by_generator.items()},
        "llm_calls": int(calls),
        "cache_hits": int(hits),
        "cache_hit_rate": round(hits / lookups, 4) if lookups else None,
        "cost_usd": round(float(cost), 6),
        "cost_per_1k_usd": round(float(cost) / sent * 1000, 6) if sent else 0.0,
    }


# --- The API's reads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LlmUsageDay:
    """One day's LLM lookups by one provider's model for a tenant: calls made, cache hits,
    tokens and dollars."""

    day: str  # ISO date, UTC
    provider: str
    model: str
    calls: int
    cache_hits: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


async def llm_usage_by_day(
    *, session: AsyncSession, tenant_id: str, since: date, until: date
) -> list[LlmUsageDay]:
    """The tenant's usage from ``since`` to ``until`` (both included), by day, provider and
    model, in that order."""
    rows = await session.execute(
        select(  # type: ignore[call-overload]
            LlmUsage.day,
            LlmUsage.provider,
            LlmUsage.model,
            func.count(case((col(LlmUsage.cache_hit).is_(False), 1))),
            func.count(case((col(LlmUsage.cache_hit).is_(True), 1))),
            func.sum(LlmUsage.input_tokens),
            func.sum(LlmUsage.output_tokens),
            func.sum(LlmUsage.cost_usd),
        )
        .where(
            col(LlmUsage.tenant_id) == tenant_id,
            col(LlmUsage.day) >= since.isoformat(),
            col(LlmUsage.day) <= until.isoformat(),
        )
        .group_by(col(LlmUsage.day), col(LlmUsage.provider), col(LlmUsage.model))
        .order_by(col(LlmUsage.day), col(LlmUsage.provider), col(LlmUsage.model))
    )
    return [
        LlmUsageDay(
            day=day, provider=provider, model=model, calls=int(calls), cache_hits=int(hits),
            input_tokens=int(tin or 0), output_tokens=int(tout or 0), cost_usd=float(cost or 0),
        )
        for day, provider, model, calls, hits, tin, tout, cost in rows
    ]  # fmt: skip
