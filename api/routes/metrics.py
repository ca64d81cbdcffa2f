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
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from api.deps import DatabaseDep
from tailor.observability.metrics import REGISTRY
from tailor.store.reports import totals_by_tenant

router = APIRouter(tags=["operations"])
# Rollup counters that are money, not events: exported on their own.
_REVENUE = {"revenue_cents": "click", "revenue_open_cents": "open"}


class _RollupTotals(Collector):
    """The rollups' totals as Prometheus counters (they only grow, like counters)."""

    def __init__(self, totals: dict[str, dict[str, int]]) -> None:
        self._totals = totals

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

    def describe(self) -> list[Metric]:
        return []


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def metrics(db: DatabaseDep) -> Response:
    """This process's metrics and every tenant's email events, for Prometheus."""
    async with db.read() as conn:
        totals = await totals_by_tenant(conn)
    body = generate_latest(REGISTRY) + generate_latest(_RollupTotals(totals))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
