"""The daily LLM budget: a tenant's cap on what its LLM calls cost per day (UTC).

Checked once per chunk before any new call: past the cap, cached content is still used (it
costs nothing) and new clusters get the rules tier. An alert is logged at
``TAILOR_LLM_BUDGET_ALERT_RATIO`` of the cap. A chunk can overshoot by its own few calls.
"""

from __future__ import annotations

import logging
from datetime import datetime

from tailor.db import Database
from tailor.models import Tenant
from tailor.store.generation import spent_today

log = logging.getLogger(__name__)


def daily_cap(own_usd: float | None, default_usd: float) -> float:
    """A tenant's daily LLM cap: its own, else the service default."""
    return default_usd if own_usd is None else own_usd


class DailyBudget:
    def __init__(self, db: Database, *, default_usd: float, alert_ratio: float) -> None:
        self._db = db
        self._default_usd = default_usd  # for tenants without a cap of their own
        self._alert_ratio = alert_ratio

    async def allows_calls(self, tenant: Tenant, now: datetime) -> bool:
        """False once the tenant's LLM spend today reached its cap."""
        budget = daily_cap(tenant.llm_daily_budget_usd, self._default_usd)
        async with self._db.read() as conn:
            spent = await spent_today(conn, tenant_id=tenant.id, day=now.date().isoformat())
        if spent >= budget:
            log.warning("tenant %s reached its daily LLM budget ($%.2f of $%.2f): rules tier",
                        tenant.id, spent, budget)  # fmt: skip
            return False
        if spent >= budget * self._alert_ratio:
            log.warning("tenant %s has spent $%.2f of its $%.2f daily LLM budget",
                        tenant.id, spent, budget)  # fmt: skip
        return True
