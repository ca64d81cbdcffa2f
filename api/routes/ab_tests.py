"""A/B tests: variant cells, the decision, and the winner's rollout (``AbTestWorkflow``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from api.audit import audit_target
from api.deps import DatabaseDep, GatewayDep, SessionDep, SettingsDep, TenantDep
from api.idempotency import IdempotencyDep
from api.openapi import problems
from api.paging import Cursor, Limit, after_time, page, time_cursor
from api.schemas.ab_tests import AbTestIn, AbTestListItem, AbTestStarted, AbWinnerIn
from api.schemas.base import Page, TextId
from tailor.analytics.lift import Arm, lift
from tailor.errors import InvalidInput, NotFound
from tailor.models import AbTest, AbTestStatus, Generator
from tailor.store.ab_tests import (
    VariantCounts,
    VariantSpec,
    create_ab_test,
    delete_ab_test,
    get_ab_test,
    list_ab_tests,
    variant_counts,
)
from tailor.store.templates import get_version

router = APIRouter(prefix="/v1/ab-tests", tags=["ab-tests"])

ACTIVE = (AbTestStatus.TESTING, AbTestStatus.ROLLING_OUT)


@router.post(
    "",
    response_model=AbTestStarted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(503),
)
async def submit(
    body: AbTestIn,
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    gateway: GatewayDep,
    settings: SettingsDep,
    db: DatabaseDep,
    idempotency: IdempotencyDep,
) -> AbTestStarted:
    """Start an A/B test: each variant goes to an equal cell of ``test_fraction`` of the
    segment; after the window the winner goes to everyone else."""
    cells = body.cells()
    for index, variant in enumerate(cells):
        try:
            await get_version(
                session=session, tenant_id=tenant.id, version_id=variant.template_version_id
            )
        except NotFound as exc:
            where = "" if body.ai_vs_plain else f"variants.{index}."
            raise InvalidInput(f"{where}template_version_id", str(exc)) from exc
    control = await gateway.ab_tests()
    try:
        test = await create_ab_test(
            session=session,
            tenant_id=tenant.id,
            name=body.name,
            segment=body.segment.model_dump(exclude_none=True),
            variants=[VariantSpec(v.key, v.template_version_id, v.generator) for v in cells],
            metric=body.metric,
            test_fraction=body.test_fraction,
            threshold=body.threshold,
            min_sent_per_variant=body.min_sent_per_variant,
            window_s=max(1, round(body.window_hours * 3600)),
            default_variant=body.default_variant or cells[0].key,
        )
    except ValueError as exc:
        raise InvalidInput("test_fraction", str(exc)) from exc
    audit_target(request, test_id=test.id)
    await session.commit()  # the workflow reads the rows
    try:
        await control.start(test)
    except Exception as exc:
        async with db.write() as conn:  # nothing half-written: no workflow, no test
            await delete_ab_test(conn=conn, test=test)
        raise HTTPException(503, f"could not start the A/B test workflow: {exc}") from exc
    started = AbTestStarted(
        id=test.id,
        status=test.status,
        workflow_id=test.workflow_id,
        cell_campaign_ids={v["key"]: v["campaign_id"] for v in test.variants},
        status_url=f"{settings.public_url}/v1/ab-tests/{test.id}",
        temporal_ui_url=settings.temporal_ui_workflow_url(test.workflow_id),
    )
    await idempotency.remember(status.HTTP_202_ACCEPTED, started)
    return started


@router.get("", response_model=Page[AbTestListItem])
async def list_all(
    session: SessionDep,
    tenant: TenantDep,
    status: AbTestStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[AbTestListItem]:
    """The tenant's A/B tests, newest first."""
    rows = await list_ab_tests(session=session, tenant_id=tenant.id, after=after_time(cursor),
                               limit=limit + 1, status=status)  # fmt: skip
    return page(rows, limit=limit, item=AbTestListItem.model_validate,
                cursor=lambda t: time_cursor(t.created_at, t.id))  # fmt: skip


@router.get("/{test_id}")
async def read(
    test_id: TextId, session: SessionDep, tenant: TenantDep, gateway: GatewayDep, db: DatabaseDep
) -> dict[str, Any]:
    """The test, each variant's delivered emails and engagement, and the decision."""
    test = await get_ab_test(session=session, test_id=test_id, tenant_id=tenant.id)
    async with db.read() as conn:
        counts = await variant_counts(conn, test=test)
    progress = None
    if test.status in ACTIVE:
        try:
            progress = dataclasses.asdict(await (await gateway.ab_tests()).progress(test))
        except Exception:  # the store's view stands without the live one
            progress = None
    return {
        **test.model_dump(exclude={"workflow_id"}),
        "variants": [
            {
                **v,
                "sent": c.sent,
                "successes": c.successes,
                "rate": round(c.successes / c.sent, 4) if c.sent else None,
                **_lift_over_plain(test, v, c, counts),
            }
            for v, c in zip(test.variants, counts, strict=True)
        ],  # fmt: skip
        "progress": progress,
    }


def _lift_over_plain(
    test: AbTest, variant: dict[str, Any], mine: VariantCounts, counts: list[VariantCounts]
) -> dict[str, Any]:
    """An AI variant's lift over the test's plain variant (generator rules), on the test's
    own metric, reported as a holdout's is: rates, difference, 95% interval, p-value.
    (``GET /v1/reports/ab-tests/{id}`` has every measure, from the rollups.)"""
    base = test.baseline()
    if base.get("generator") != Generator.RULES or variant is base:
        return {}
    plain = counts[test.variants.index(base)]
    result = lift(Arm(mine.sent, mine.successes), Arm(plain.sent, plain.successes))
    return {"lift_over_plain": {"metric": test.metric, "plain_variant": plain.key,
                                **result.as_dict()}}  # fmt: skip


async def _active(session: SessionDep, tenant: TenantDep, test_id: str) -> AbTest:
    test = await get_ab_test(session=session, test_id=test_id, tenant_id=tenant.id)
    if test.status != AbTestStatus.TESTING:
        raise HTTPException(409, f"A/B test {test_id} is {test.status}; the decision is made")
    return test


@router.post(
    "/{test_id}/decide", status_code=status.HTTP_202_ACCEPTED, responses=problems(409, 503)
)
async def decide_now(
    test_id: TextId, session: SessionDep, tenant: TenantDep, gateway: GatewayDep
) -> dict[str, str]:
    """Stop the window early and decide on the data so far (the default if inconclusive)."""
    test = await _active(session, tenant, test_id)
    await (await gateway.ab_tests()).decide_now(test)
    return {"id": test.id, "status": "deciding"}


@router.post(
    "/{test_id}/winner", status_code=status.HTTP_202_ACCEPTED, responses=problems(409, 503)
)
async def choose_winner(
    test_id: TextId, body: AbWinnerIn, session: SessionDep, tenant: TenantDep, gateway: GatewayDep
) -> dict[str, str]:
    """Pick the winner by hand; its rollout starts at once."""
    test = await _active(session, tenant, test_id)
    keys = [v["key"] for v in test.variants]
    if body.variant not in keys:
        raise InvalidInput("variant", f"must be one of {keys}")
    await (await gateway.ab_tests()).choose_winner(test, body.variant)
    return {"id": test.id, "status": "rolling_out", "winner": body.variant}


@router.post(
    "/{test_id}/cancel", status_code=status.HTTP_202_ACCEPTED, responses=problems(409, 503)
)
async def cancel(
    test_id: TextId, session: SessionDep, tenant: TenantDep, gateway: GatewayDep
) -> dict[str, str]:
    test = await get_ab_test(session=session, test_id=test_id, tenant_id=tenant.id)
    if test.status not in ACTIVE:
        raise HTTPException(409, f"A/B test {test_id} is {test.status}; nothing to cancel")
    await (await gateway.ab_tests()).cancel(test)
    return {"id": test.id, "status": "cancelling"}
