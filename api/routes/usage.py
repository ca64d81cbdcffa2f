"""LLM spend per day for the tenant, against its daily budget."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from api.deps import SessionDep, SettingsDep, TenantDep
from tailor.models import utcnow
from tailor.store.generation import llm_usage_by_day

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
    usage = await llm_usage_by_day(session=session, tenant_id=tenant.id, since=since, until=until)
    days: list[dict[str, Any]] = [
        {
            "day": u.day, "provider": u.provider, "model": u.model, "calls": u.calls,
            "cache_hits": u.cache_hits, "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens, "cost_usd": round(u.cost_usd, 6),
        }
        for u in usage
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
