from __future__ import annotations

import secrets
from collections.abc import Mapping
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
    Send,
    SendStatus,
    utcnow,
)
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
