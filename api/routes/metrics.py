"""``GET /metrics``: this API process's metrics in the Prometheus text format, and every
tenant's email events read from the report rollups (so opens and clicks recorded by the tracking
recorder's own process, and provider events, count wherever they were recorded).

Platform keys only: the figures span tenants. Prometheus sends the key as a bearer token
(``deploy/prometheus``'s scrape config reads it from a file). Workers serve theirs on a port of
their own (``TAILOR_WORKER_METRICS_PORT``).
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from api.deps import DatabaseDep, SettingsDep
from tailor.models import utcnow
from tailor.observability.metrics import REGISTRY
from tailor.personalise.budget import daily_cap
from tailor.store.generation import spend_by_tenant
from tailor.store.reports import totals_by_tenant

router = APIRouter(tags=["operations"])
# Rollup counters that are money, not events: exported on their own.
_REVENUE = {"revenue_cents": "click", "revenue_open_cents": "open"}


class _FromTheDatabase(Collector):
    """What the database knows across processes: the rollups' totals as counters (they only
    grow, like counters), and each tenant's LLM spend today against its daily budget."""

    def __init__(
        self,
        totals: dict[str, dict[str, int]],
        spend: list[tuple[str, float | None, float]],
        default_budget_usd: float,
    ) -> None:
        self._totals = totals
        self._spend = spend
        self._default_budget_usd = default_budget_usd

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "tailor_email_events",
            "Email events per tenant from the report rollups: sent, delivered, opened and "
            "clicked (by people), bounced, soft_bounced, complained, unsubscribed, conversions, "
            "... Rates are these over sent.",
            labels=["tenant", "event"],
        )
        revenue = CounterMetricFamily(
            "tailor_attributed_revenue_cents",
            "Order revenue attributed to emails, by the rule that attributed it (click, open).",
            labels=["tenant", "rule"],
        )
        for tenant, counters in self._totals.items():
            for name, value in counters.items():
                if name in _REVENUE:
                    revenue.add_metric([tenant, _REVENUE[name]], value)
                else:
                    events.add_metric([tenant, name], value)
        yield events
        yield revenue
        spent = GaugeMetricFamily(
            "tailor_llm_spend_today_usd",
            "LLM spend since midnight UTC, per tenant (the budget's day).",
            labels=["tenant"],
        )
        budget = GaugeMetricFamily(
            "tailor_llm_daily_budget_usd",
            "Each tenant's daily LLM budget (its own, or the service default).",
            labels=["tenant"],
        )
        for tenant, cap, usd in self._spend:
            spent.add_metric([tenant], usd)
            budget.add_metric([tenant], daily_cap(cap, self._default_budget_usd))
        yield spent
        yield budget

    def describe(self) -> list[Metric]:
        return []


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def metrics(db: DatabaseDep, settings: SettingsDep) -> Response:
    """This process's metrics, every tenant's email events and LLM spend, for Prometheus."""
    async with db.read() as conn:
        totals = await totals_by_tenant(conn)
        spend = await spend_by_tenant(conn, day=utcnow().date().isoformat())
    shared = _FromTheDatabase(totals, spend, settings.llm_daily_budget_usd)
    body = generate_latest(REGISTRY) + generate_latest(shared)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
