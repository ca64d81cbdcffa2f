from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import AwareDatetime

from api.audit import audit_target
from api.deps import ControlDep, DatabaseDep, GatewayDep, SessionDep, SettingsDep, TenantDep
from api.idempotency import IdempotencyDep
from api.openapi import problems
from api.paging import Cursor, Limit, after_time, page, time_cursor
from api.schemas.base import Page, TextId
from api.schemas.campaigns import CampaignIn, CampaignListItem, CampaignPublic, CampaignStarted
from tailor.errors import InvalidInput, NotFound
from tailor.models import Campaign, CampaignKind, CampaignStatus, Holdout, HoldoutTreatment
from tailor.store.campaigns import (
    ACTIVE,
    create_campaign,
    delete_campaign,
    get_campaign,
    list_campaigns,
    send_counts,
    set_campaign_status,
)
from tailor.store.generation import generation_stats
from tailor.store.templates import get_version

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


@router.post(
    "",
    response_model=CampaignStarted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(503),
)
async def submit(
    body: CampaignIn,
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    gateway: GatewayDep,
    settings: SettingsDep,
    db: DatabaseDep,
    idempotency: IdempotencyDep,
) -> CampaignStarted:
    """Validate and start a batch campaign. Sending runs in a durable Temporal workflow."""
    try:
        await get_version(session=session, tenant_id=tenant.id, version_id=body.template_version_id)
    except NotFound as exc:
        raise InvalidInput("template_version_id", str(exc)) from exc
    # Invalid input is told as such (422) before whether Temporal is up (503).
    control = await gateway.control()
    campaign = await create_campaign(
        session=session,
        tenant_id=tenant.id,
        name=body.name,
        template_version_id=body.template_version_id,
        segment=body.segment.model_dump(exclude_none=True),
        prompt_version=body.prompt_version,
        send_time=body.send_time,
        start_at=body.start_at,
        tracking_enabled=body.tracking,
        holdout=body.holdout,
        generator=body.generator,
    )
    audit_target(request, campaign_id=campaign.id)
    # The workflow reads the campaign row, so it must be committed before the workflow starts.
    await session.commit()
    try:
        await control.start(campaign)
    except Exception as exc:
        # Nothing half-written: no workflow, so no campaign.
        async with db.write() as conn:
            await delete_campaign(conn=conn, campaign_id=campaign.id)
        raise HTTPException(
            503, f"could not start the campaign workflow: {exc}; is the Tailor server running?"
        ) from exc
    started = CampaignStarted(
        id=campaign.id,
        status=campaign.status,
        workflow_id=campaign.workflow_id,
        status_url=f"{settings.public_url}/v1/campaigns/{campaign.id}",
        temporal_ui_url=settings.temporal_ui_workflow_url(campaign.workflow_id),
    )
    await idempotency.remember(status.HTTP_202_ACCEPTED, started)
    return started


def _utc(field: str, value: datetime | None) -> datetime | None:
    try:
        return None if value is None else value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:00:00-05:00
        raise InvalidInput(field, "is out of range") from exc


@router.get("", response_model=Page[CampaignListItem])
async def list_all(
    session: SessionDep,
    tenant: TenantDep,
    status: CampaignStatus | None = None,
    kind: CampaignKind | None = None,
    created_after: AwareDatetime | None = None,
    created_before: AwareDatetime | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[CampaignListItem]:
    """The tenant's campaigns, newest first; ``created_after`` (inclusive) and
    ``created_before`` (exclusive) take ISO 8601 with an offset, e.g. ``2025-01-31T00:00:00Z``."""
    created_after = _utc("created_after", created_after)
    created_before = _utc("created_before", created_before)
    if created_after is not None and created_before is not None:
        if created_after >= created_before:
            raise InvalidInput("created_before", "must be later than created_after")
    rows = await list_campaigns(
        session=session, tenant_id=tenant.id, after=after_time(cursor), limit=limit + 1,
        status=status, kind=kind, created_after=created_after, created_before=created_before,
    )  # fmt: skip
    return page(rows, limit=limit, item=CampaignListItem.model_validate,
                cursor=lambda c: time_cursor(c.created_at, c.id))  # fmt: skip


@router.get("/{campaign_id}", response_model=CampaignPublic)
async def read(
    campaign_id: TextId,
    session: SessionDep,
    tenant: TenantDep,
    gateway: GatewayDep,
    settings: SettingsDep,
    db: DatabaseDep,
) -> CampaignPublic:
    """The campaign, its sends by status, and live progress while it runs (when Temporal is
    reachable: the counts come from the store either way)."""
    campaign = await get_campaign(session=session, campaign_id=campaign_id, tenant_id=tenant.id)
    async with db.read() as conn:
        counts = await send_counts(conn, campaign_id=campaign.id)
        generation = await generation_stats(conn, campaign_id=campaign.id)
    progress = None
    if campaign.status in ACTIVE:
        try:
            live = await (await gateway.control()).progress(campaign)
        except HTTPException:
            live = None
        progress = dataclasses.asdict(live) if live is not None else None
    return CampaignPublic(
        **campaign.model_dump(
            include={
                "id",
                "name",
                "status",
                "template_version_id",
                "segment",
                "created_at",
                "completed_at",
                "start_at",
                "kind",
                "generator",
            }
        ),
        holdout=_holdout(campaign),
        counts=counts,
        generation=generation,
        progress=progress,
        temporal_ui_url=settings.temporal_ui_workflow_url(campaign.workflow_id),
    )


def _holdout(campaign: Campaign) -> Holdout | None:
    if campaign.holdout_fraction <= 0:
        return None
    return Holdout(fraction=campaign.holdout_fraction,
                   treatment=HoldoutTreatment(campaign.holdout_treatment))  # fmt: skip


async def _steer(
    campaign_id: str,
    session: SessionDep,
    tenant: TenantDep,
    action: Callable[[Campaign], Awaitable[None]],
    new_status: CampaignStatus | None,
) -> dict[str, str]:
    campaign = await get_campaign(session=session, campaign_id=campaign_id, tenant_id=tenant.id)
    if campaign.status not in ACTIVE:
        raise HTTPException(409, f"campaign {campaign_id} is {campaign.status}; nothing to change")
    await action(campaign)
    if new_status is not None:
        await set_campaign_status(session=session, campaign=campaign, status=new_status)
    return {"id": campaign.id, "status": campaign.status}


@router.post("/{campaign_id}/pause", responses=problems(409))
async def pause(
    campaign_id: TextId, session: SessionDep, tenant: TenantDep, control: ControlDep
) -> dict[str, str]:
    """Hold new chunks; chunks already sending finish."""
    campaign = await get_campaign(session=session, campaign_id=campaign_id, tenant_id=tenant.id)
    if campaign.status == CampaignStatus.SCHEDULED:
        raise HTTPException(409, f"campaign {campaign_id} has not started; cancel it instead")
    return await _steer(campaign_id, session, tenant, control.pause, CampaignStatus.PAUSED)


@router.post("/{campaign_id}/resume", responses=problems(409))
async def resume(
    campaign_id: TextId, session: SessionDep, tenant: TenantDep, control: ControlDep
) -> dict[str, str]:
    return await _steer(campaign_id, session, tenant, control.resume, CampaignStatus.RUNNING)


@router.post("/{campaign_id}/cancel", responses=problems(409))
async def cancel(
    campaign_id: TextId, session: SessionDep, tenant: TenantDep, control: ControlDep
) -> dict[str, str]:
    """Stop the campaign; the workflow marks it cancelled once in-flight chunks stop."""
    return await _steer(campaign_id, session, tenant, control.cancel, None)
