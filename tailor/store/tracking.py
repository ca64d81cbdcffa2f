"""Tracked opens and clicks: what a pixel or redirect token needs to be checked and followed,
and the hits themselves (human or machine, never the reader's address or browser)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from tailor.models import Campaign, Send, Tenant, TrackingHit


@dataclass(frozen=True)
class TrackedSend:
    """A send as its pixel and redirect see it."""

    send_id: int
    tenant_id: str
    key_version: int  # the tenant's current tracking key version
    links: list[str]  # the URLs Tailor put in the email, in order
    delivered_at: datetime | None  # when the provider took it (or, before that, the claim)
    status: str


async def tracked_send(conn: AsyncConnection, *, send_id: int) -> TrackedSend | None:
    """The send a token names, with its tenant's key version; None for an unknown send."""
    row = (
        await conn.execute(
            select(
                col(Send.id),
                col(Campaign.tenant_id),
                col(Tenant.tracking_key_version),
                col(Send.links),
                col(Send.sent_at),
                col(Send.dispatched_at),
                col(Send.status),
            )
            .join(Campaign, col(Campaign.id) == col(Send.campaign_id))
            .join(Tenant, col(Tenant.id) == col(Campaign.tenant_id))
            .where(col(Send.id) == send_id)
        )
    ).first()
    if row is None:
        return None
    _, tenant_id, version, links, sent_at, dispatched_at, status = row
    return TrackedSend(
        send_id=send_id,
        tenant_id=tenant_id,
        key_version=version,
        links=list(links or []),
        delivered_at=sent_at or dispatched_at,
        status=status,
    )


async def other_links_clicked(
    conn: AsyncConnection, *, send_id: int, link_index: int, since: datetime
) -> int:
    """How many distinct links of the send, other than ``link_index``, were clicked since."""
    count = await conn.scalar(
        select(func.count(func.distinct(TrackingHit.link_index))).where(
            col(TrackingHit.send_id) == send_id,
            col(TrackingHit.kind) == "click",
            col(TrackingHit.link_index) != link_index,
            col(TrackingHit.at) >= since,
        )
    )
    return int(count or 0)


async def record_hit(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    send_id: int,
    kind: str,
    link_index: int | None,
    human: bool,
    rule: str | None,
    at: datetime,
) -> None:
    await conn.execute(
        insert(TrackingHit).values(
            tenant_id=tenant_id,
            send_id=send_id,
            kind=kind,
            link_index=link_index,
            human=human,
            rule=rule,
            at=at,
        )
    )
