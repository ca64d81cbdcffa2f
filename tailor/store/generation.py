"""What generated a campaign's emails, what the LLM calls cost, and how often the cache served."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from tailor.models import LlmUsage, Send, SendStatus


async def generation_stats(conn: AsyncConnection, campaign_id: str) -> dict[str, Any]:
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
