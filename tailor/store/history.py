"""What people did and were sent, read back for learning: opens, the events the daily job
derives features from, and when emails went out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from tailor.models import Event, Send


@dataclass(frozen=True)
class PastEvent:
    contact_id: int
    name: str
    occurred_at: datetime
    properties: dict[str, Any]
    device: str | None
    timezone: str | None


@dataclass(frozen=True)
class PastSend:
    contact_id: int
    dispatched_at: datetime


async def open_times(
    conn: AsyncConnection, *, contact_id: int, since: datetime, limit: int = 500
) -> list[datetime]:
    """When a person opened emails since ``since``, newest first."""
    rows = await conn.execute(
        select(Event.occurred_at)  # type: ignore[call-overload]
        .where(
            col(Event.type) == "email.opened",
            col(Event.occurred_at) >= since,
            col(Event.contact_id) == contact_id,
        )
        .order_by(col(Event.occurred_at).desc())
        .limit(limit)
    )
    return list(rows.scalars())


async def events_since(
    conn: AsyncConnection, *, contact_ids: Sequence[int], since: datetime
) -> list[PastEvent]:
    rows = await conn.execute(
        select(Event.contact_id, Event.type, Event.occurred_at, Event.properties,  # type: ignore[call-overload]
               Event.device, Event.timezone)
        .where(col(Event.contact_id).in_(contact_ids), col(Event.occurred_at) >= since)
    )  # fmt: skip
    return [PastEvent(int(c), str(n), at, p or {}, d, tz) for c, n, at, p, d, tz in rows]


async def sent_times(
    conn: AsyncConnection, *, contact_ids: Sequence[int], since: datetime
) -> list[PastSend]:
    """Each email dispatched to these people since ``since``."""
    rows = await conn.execute(
        select(Send.contact_id, Send.dispatched_at).where(  # type: ignore[call-overload]
            col(Send.contact_id).in_(contact_ids), col(Send.dispatched_at) >= since
        )
    )
    return [PastSend(int(c), at) for c, at in rows]
