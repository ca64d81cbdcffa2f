"""Reports: a campaign's, a journey's or an A/B test's results, deliverability per provider, and
signup cohorts. Read from rollups kept as events arrive (``tailor.analytics.reports`` defines
every figure), so they answer in milliseconds whatever the number of sends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from api.deps import SessionDep, TenantDep
from api.openapi import problems
from api.schemas.base import TextId
from tailor.analytics.reports import (
    Window,
    campaigns_report,
    cohorts,
    deliverability,
    lift_between,
    metrics,
    series,
    total,
)
from tailor.models import Tenant, utcnow
from tailor.store.ab_tests import get_ab_test
from tailor.store.campaigns import get_campaign
from tailor.store.journeys import journey_email_campaigns
from tailor.store.reports import sum_rollups

router = APIRouter(prefix="/v1/reports", tags=["reports"])

Step = Annotated[
    Literal["hour", "day"] | None,
    Query(description="Add a series: per hour (UTC) or per day (the tenant's time zone)."),
]
Since = Annotated[datetime | None, Query(description="From this time (ISO 8601, with offset).")]
Until = Annotated[datetime | None, Query(description="Before this time (ISO 8601, with offset).")]


def _window(since: datetime | None, until: datetime | None) -> Window:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(422, f"{name}: give a time zone offset, e.g. 2026-12-01T00:00:00Z")
    if since is not None and until is not None and since >= until:
        raise HTTPException(422, "since: must be before until")
    return Window(since, until)


@dataclass(frozen=True)
class Scope:
    """What part of a campaign's or journey's results to show: a period, and a series."""

    step: str | None
    window: Window


def _scope(series: Step = None, since: Since = None, until: Until = None) -> Scope:
    return Scope(series, _window(since, until))


ScopeDep = Annotated[Scope, Depends(_scope)]


async def _report(
    session: SessionDep, tenant: Tenant, campaign_ids: list[str], scope: Scope
) -> dict[str, Any]:
    conn = await session.connection()
    report = await campaigns_report(
        conn, tenant_id=tenant.id, campaign_ids=campaign_ids, window=scope.window
    )
    if scope.step is not None:
        report["series"] = await series(
            conn, tenant_id=tenant.id, campaign_ids=campaign_ids, step=scope.step,
            timezone=tenant.timezone, window=scope.window,
        )  # fmt: skip
    report["attribution"] = {
        "click_window_hours": tenant.attribution_click_hours,
        "open_window_hours": tenant.attribution_open_hours,
    }
    return report


@router.get("/campaigns/{campaign_id}", responses=problems(404))
async def campaign_report(
    campaign_id: TextId, session: SessionDep, tenant: TenantDep, scope: ScopeDep
) -> dict[str, Any]:
    """A campaign's results: totals, per generation tier, per provider, the holdout group and
    lift (when it has one), and a series if asked."""
    campaign = await get_campaign(session=session, campaign_id=campaign_id, tenant_id=tenant.id)
    report = await _report(session, tenant, [campaign.id], scope)
    return {
        "campaign_id": campaign.id, "name": campaign.name, "kind": campaign.kind,
        "status": campaign.status, "paused_reason": campaign.paused_reason,
        "holdout_fraction": campaign.holdout_fraction,
        "holdout_treatment": campaign.holdout_treatment, **report,
    }  # fmt: skip


@router.get("/journeys/{journey_key}", responses=problems(404))
async def journey_report(
    journey_key: TextId, session: SessionDep, tenant: TenantDep, scope: ScopeDep
) -> dict[str, Any]:
    """A journey's results over all its versions, and each email's (version and step)."""
    emails = await journey_email_campaigns(session=session, tenant_id=tenant.id, key=journey_key)
    if not emails:
        raise HTTPException(404, f"no journey {journey_key!r} with emails")
    window = scope.window
    report = await _report(session, tenant, [e.campaign_id for e in emails], scope)
    per = {
        s.group["campaign_id"]: s.counts
        for s in await sum_rollups(
            await session.connection(), tenant_id=tenant.id,
            campaign_ids=[e.campaign_id for e in emails], by=("campaign_id",),
            since=window.since, until=window.until,
        )
    }  # fmt: skip
    empty = total([])
    report["emails"] = [
        {"version": e.version, "step": e.step, "campaign_id": e.campaign_id,
         **metrics(per.get(e.campaign_id, empty))}
        for e in emails
    ]  # fmt: skip
    return {"journey": journey_key, **report}


@router.get("/ab-tests/{test_id}", responses=problems(404))
async def ab_test_report(test_id: TextId, session: SessionDep, tenant: TenantDep) -> dict[str, Any]:
    """Each variant's test cell with its lift over the baseline (the plain variant of an AI vs
    plain test, else the default variant), and the winner's rollout."""
    test = await get_ab_test(session=session, test_id=test_id, tenant_id=tenant.id)
    campaigns = [str(v["campaign_id"]) for v in test.variants]
    if test.rollout_campaign_id:
        campaigns.append(test.rollout_campaign_id)
    per = {
        s.group["campaign_id"]: s.counts
        for s in await sum_rollups(
            await session.connection(), tenant_id=tenant.id, campaign_ids=campaigns,
            by=("campaign_id",),
        )
    }  # fmt: skip
    empty = total([])
    base = test.baseline()
    baseline = per.get(str(base["campaign_id"]), empty)
    variants = []
    for v in test.variants:
        counts = per.get(str(v["campaign_id"]), empty)
        variants.append(
            {
                "key": v["key"], "campaign_id": v["campaign_id"],
                "generator": v.get("generator", "auto"), **metrics(counts),
                "lift": None if v is base else lift_between(counts, baseline),
            }
        )  # fmt: skip
    rollout = None
    if test.rollout_campaign_id:
        rollout = {
            "campaign_id": test.rollout_campaign_id,
            **metrics(per.get(test.rollout_campaign_id, empty)),
        }
    return {
        "test_id": test.id, "name": test.name, "status": test.status, "metric": test.metric,
        "default_variant": test.default_variant, "baseline": base["key"], "winner": test.winner,
        "variants": variants,
        "rollout": rollout,
    }  # fmt: skip


@router.get("/deliverability")
async def deliverability_report(
    session: SessionDep, tenant: TenantDep, since: Since = None, until: Until = None
) -> dict[str, Any]:
    """Per provider, across all campaigns and journeys: sent, delivered, bounces, complaints
    and their rates."""
    providers = await deliverability(
        await session.connection(), tenant_id=tenant.id, window=_window(since, until)
    )
    return {"providers": providers}


@router.get("/cohorts")
async def cohort_report(
    session: SessionDep,
    tenant: TenantDep,
    months: Annotated[int, Query(ge=1, le=36, description="Signup months, newest last.")] = 6,
) -> dict[str, Any]:
    """Contacts by signup month × weeks since signup: how many, and the share who opened,
    clicked and bought in each week."""
    rows = await cohorts(
        await session.connection(), tenant_id=tenant.id, months=months, now=utcnow()
    )
    return {"cohorts": rows}
