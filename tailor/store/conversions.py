"""Orders and the emails they are attributed to: the last touches a person made before an order,
and the attributed conversions themselves (one per order event)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from tailor.models import Conversion, Engagement, Send, SendStatus, Tenant, TrackingHit


@dataclass(frozen=True, slots=True)
class Windows:
    """How long after a click (and, the weaker rule, an open) an order counts as the email's."""

    click_hours: int
    open_hours: int


@dataclass(frozen=True, slots=True)
class Touch:
    send_id: int
    campaign_id: str
    at: datetime


async def attribution_windows(conn: AsyncConnection, *, tenant_id: str) -> Windows:
    row = (
        await conn.execute(
            select(Tenant.attribution_click_hours, Tenant.attribution_open_hours).where(  # type: ignore[call-overload]
                col(Tenant.id) == tenant_id
            )
        )
    ).one()
    return Windows(int(row[0]), int(row[1]))


async def last_touch(
    conn: AsyncConnection, *, contact_id: int, kind: str, since: datetime, until: datetime
) -> Touch | None:
    """The person's latest human ``kind`` (open or click) of any email in [since, until]: a
    tracked one (every hit, so a second click on an older email makes it the latest), or one
    reported through the engagement API."""
    tracked = (
        select(TrackingHit.send_id.label("send_id"), TrackingHit.at.label("at"))  # type: ignore[attr-defined]
        .join(Send, col(Send.id) == col(TrackingHit.send_id))
        .where(
            col(Send.contact_id) == contact_id,
            col(TrackingHit.kind) == kind,
            col(TrackingHit.human).is_(True),
            col(TrackingHit.at).between(since, until),
        )
    )
    reported = select(
        Engagement.send_id.label("send_id"),  # type: ignore[attr-defined]
        Engagement.occurred_at.label("at"),  # type: ignore[attr-defined]
    ).where(
        col(Engagement.contact_id) == contact_id,
        col(Engagement.metric) == kind,
        col(Engagement.occurred_at).between(since, until),
    )
    touches = union_all(tracked, reported).subquery()
    row = (
        await conn.execute(
            select(touches.c.send_id, touches.c.at, Send.campaign_id)  # type: ignore[call-overload]
            .join(Send, col(Send.id) == touches.c.send_id)
            .order_by(touches.c.at.desc(), touches.c.send_id.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    send_id, at, campaign_id = row
    at = at if at.tzinfo else at.replace(tzinfo=until.tzinfo)  # SQLite's union drops the type
    return Touch(int(send_id), str(campaign_id), at)


async def emails_before(
    conn: AsyncConnection, *, contact_id: int, since: datetime, until: datetime
) -> list[int]:
    """The person's emails sent, or held back as a control, in [since, until]: those an order
    then is "followed by an order" for, clicked or not (what lift compares)."""
    when = func.coalesce(col(Send.sent_at), col(Send.created_at))
    rows = await conn.execute(
        select(Send.id).where(  # type: ignore[call-overload]
            col(Send.contact_id) == contact_id,
            or_(
                col(Send.status) == SendStatus.SENT.value,
                col(Send.status) == SendStatus.HELD_OUT.value,
            ),
            when.between(since, until),
        )
    )
    return [int(send_id) for send_id in rows.scalars()]


async def record_conversion(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    event_id: int,
    contact_id: int,
    touch: Touch | None,
    rule: str,
    revenue_cents: int,
    occurred_at: datetime,
) -> bool:
    """Store the order's attribution; False if this order event was attributed before."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    result = await conn.execute(
        dialect.insert(Conversion)
        .values(
            tenant_id=tenant_id, event_id=event_id, contact_id=contact_id,
            send_id=touch.send_id if touch else None,
            campaign_id=touch.campaign_id if touch else None,
            rule=rule, revenue_cents=revenue_cents, occurred_at=occurred_at,
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
    )  # fmt: skip
    return bool(result.rowcount)
