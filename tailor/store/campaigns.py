from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from tailor.errors import NotFound
from tailor.models import (
    DEFAULT_PROMPT,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Contact,
    Generator,
    Holdout,
    HoldoutTreatment,
    Send,
    SendStatus,
    utcnow,
)
from tailor.store.keyset import TimeKey, older_than
from tailor.store.segments import segment_filter

ACTIVE = (CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED)


def new_campaign_id() -> str:
    return f"cmp_{secrets.token_hex(8)}"


def workflow_id_for(campaign_id: str) -> str:
    return f"campaign-{campaign_id}"


async def create_campaign(
    *,
    session: AsyncSession,
    tenant_id: str,
    name: str,
    template_version_id: int,
    segment: dict[str, Any],
    prompt_version: str = DEFAULT_PROMPT,
    send_time: str = "now",
    kind: str = CampaignKind.BATCH,
    start_at: datetime | None = None,
    tracking_enabled: bool = True,
    holdout: Holdout | None = None,
    generator: Generator = Generator.AUTO,
) -> Campaign:
    campaign_id = new_campaign_id()
    campaign = Campaign(
        id=campaign_id,
        tenant_id=tenant_id,
        name=name,
        template_version_id=template_version_id,
        segment=segment,
        prompt_version=prompt_version,
        send_time=send_time,
        kind=kind,
        start_at=start_at,
        tracking_enabled=tracking_enabled,
        holdout_fraction=holdout.fraction if holdout is not None else 0.0,
        holdout_treatment=holdout.treatment if holdout is not None else HoldoutTreatment.NONE,
        generator=generator,
        status=CampaignStatus.SCHEDULED if start_at is not None else CampaignStatus.RUNNING,
        workflow_id=workflow_id_for(campaign_id),
    )
    session.add(campaign)
    await session.flush()
    return campaign


async def get_campaign(
    *, session: AsyncSession, campaign_id: str, tenant_id: str | None = None
) -> Campaign:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None or (tenant_id is not None and campaign.tenant_id != tenant_id):
        raise NotFound("campaign", campaign_id)
    return campaign


async def set_status(*, conn: AsyncConnection, campaign_id: str, status: str) -> None:
    final = status in (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED, CampaignStatus.FAILED)
    await conn.execute(
        update(Campaign)
        .where(col(Campaign.id) == campaign_id)
        .values(status=status, completed_at=utcnow() if final else None)
    )


async def start_scheduled(conn: AsyncConnection, *, campaign_id: str) -> None:
    """A scheduled campaign's time has come: it is running now."""
    await conn.execute(
        update(Campaign)
        .where(col(Campaign.id) == campaign_id, col(Campaign.status) == "scheduled")
        .values(status=CampaignStatus.RUNNING.value)
    )


async def audience_size(conn: AsyncConnection, *, tenant_id: str, segment: dict[str, Any]) -> int:
    count = await conn.execute(
        select(func.count()).select_from(Contact).where(segment_filter(tenant_id, segment))
    )
    return int(count.scalar_one())


async def active_campaign_ids(*, session: AsyncSession, tenant_id: str) -> list[str]:
    rows = await session.execute(
        select(Campaign.id).where(  # type: ignore[call-overload]
            col(Campaign.tenant_id) == tenant_id,
            col(Campaign.status).in_(ACTIVE),
            col(Campaign.kind) == CampaignKind.BATCH,  # journeys are signalled per person
        )
    )
    return [row for (row,) in rows]


# A dispatched send counts as sent: it may have been accepted, and it is never sent again.
DELIVERED = (SendStatus.SENT, SendStatus.DISPATCHED)


def totals(counts: Mapping[str, int]) -> tuple[int, int, int]:
    """(sent, suppressed, failed) from sends by status (``DELIVERED`` counts as sent)."""
    return (
        sum(counts.get(status, 0) for status in DELIVERED),
        counts.get(SendStatus.SUPPRESSED, 0),
        counts.get(SendStatus.FAILED, 0),
    )


async def send_counts(conn: AsyncConnection, *, campaign_id: str) -> dict[str, int]:
    """Sends by status. A dispatched send counts as sent: it is never sent again."""
    rows = await conn.execute(
        select(Send.status, func.count())  # type: ignore[call-overload]
        .where(col(Send.campaign_id) == campaign_id)
        .group_by(col(Send.status))
    )
    counts = {status.value: 0 for status in SendStatus}
    counts.update(dict(rows.all()))
    return counts


# --- The API's reads and writes ----------------------------------------------------------------


async def delete_campaign(*, conn: AsyncConnection, campaign_id: str) -> None:
    """Remove a campaign whose workflow never started, so nothing is left half-written."""
    await conn.execute(delete(Campaign).where(col(Campaign.id) == campaign_id))


async def set_campaign_status(
    *, session: AsyncSession, campaign: Campaign, status: CampaignStatus
) -> None:
    """The status a pause or resume leaves, written in the caller's transaction (the workflow
    writes its own with ``set_status``)."""
    campaign.status = status
    await session.flush()


@dataclass(frozen=True)
class CampaignSummary:
    """A campaign as a list shows it: no segment, no counts."""

    id: str
    name: str
    kind: str
    status: str
    template_version_id: int
    start_at: datetime | None
    created_at: datetime
    completed_at: datetime | None


async def list_campaigns(
    *,
    session: AsyncSession,
    tenant_id: str,
    after: TimeKey | None,
    limit: int,
    status: CampaignStatus | None = None,
    kind: CampaignKind | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> list[CampaignSummary]:
    """A keyset page of the tenant's campaigns, newest first (``tailor.store.keyset``);
    created in [created_after, created_before) when those are given."""
    where = [
        col(Campaign.tenant_id) == tenant_id,
        older_than(col(Campaign.created_at), col(Campaign.id), after),
    ]
    if status is not None:
        where.append(col(Campaign.status) == status.value)
    if kind is not None:
        where.append(col(Campaign.kind) == kind.value)
    if created_after is not None:
        where.append(col(Campaign.created_at) >= created_after)
    if created_before is not None:
        where.append(col(Campaign.created_at) < created_before)
    rows = await session.execute(
        select(  # type: ignore[call-overload]
            Campaign.id, Campaign.name, Campaign.kind, Campaign.status,
            Campaign.template_version_id, Campaign.start_at, Campaign.created_at,
            Campaign.completed_at,
        )
        .where(*where)
        .order_by(col(Campaign.created_at).desc(), col(Campaign.id).desc())
        .limit(limit)
    )  # fmt: skip
    return [CampaignSummary(*row) for row in rows.all()]


async def record_auto_pause(conn: AsyncConnection, *, campaign_id: str, reason: str) -> bool:
    """A running campaign paused by the deliverability guard, and why; False if it was no longer
    running or was paused by the guard before."""
    result = await conn.execute(
        update(Campaign)
        .where(
            col(Campaign.id) == campaign_id,
            col(Campaign.status) == CampaignStatus.RUNNING.value,
            col(Campaign.paused_reason).is_(None),
        )
        .values(status=CampaignStatus.PAUSED.value, paused_reason=reason[:300])
    )
    return bool(result.rowcount)
