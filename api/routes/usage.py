"""LLM spend per day for the tenant, against its daily budget."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import case, func, select
from sqlmodel import col

from api.deps import SessionDep, SettingsDep, TenantDep
from tailor.models import LlmUsage, utcnow

router = APIRouter(tags=["usage"])


@router.get("/v1/usage/llm")
async def llm_usage(
    session: SessionDep,
    tenant: TenantDep,
    settings: SettingsDep,
    since: Annotated[date | None, Query(description="First day (UTC); default: 30 days")] = None,
    until: Annotated[date | None, Query(description="Last day (UTC); default today")] = None,
) -> dict[str, Any]:
    today = utcnow().date()
    until = until or today
    since = since or until - timedelta(days=29)
    if since > until:
        raise HTTPException(422, "since: must not be after until")
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
            col(LlmUsage.tenant_id) == tenant.id,
            col(LlmUsage.day) >= since.isoformat(),
            col(LlmUsage.day) <= until.isoformat(),
        )
        .group_by(col(LlmUsage.day), col(LlmUsage.provider), col(LlmUsage.model))
        .order_by(col(LlmUsage.day), col(LlmUsage.provider), col(LlmUsage.model))
    )
    days: list[dict[str, Any]] = [
        {
            "day": day, "provider": provider, "model": model, "calls": calls,
            "cache_hits": hits, "input_tokens": int(tin or 0), "output_tokens": int(tout or 0),
            "cost_usd": round(float(cost or 0), 6),
        }
        for day, provider, model, calls, hits, tin, tout, cost in rows
    ]  # fmt: skip
    budget = tenant.llm_daily_budget_usd
    if budget is None:
        budget = settings.llm_daily_budget_usd
    spent_today = sum(d["cost_usd"] for d in days if d["day"] == today.isoformat())
    return {
        "tenant_id": tenant.id,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "data": days,
        "total_cost_usd": round(sum(d["cost_usd"] for d in days), 6),
        "daily_budget_usd": budget,
        "spent_today_usd": round(spent_today, 6),
        "throttled_today": spent_today >= budget,
    }
