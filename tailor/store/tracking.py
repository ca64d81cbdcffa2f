"""Tracked opens and clicks: what a pixel or redirect token needs to be checked and followed,
and the hits themselves (human or machine, never the reader's address or browser).

Written for batches: the recorder stores a queue's worth of hits at a time, so each function is
one statement whatever the number of sends or hits.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from tailor.models import Campaign, Engagement, Send, Tenant, TrackingHit


@dataclass(frozen=True)
class TrackedSend:
    """A send as its pixel and redirect see it."""

    send_id: int
    tenant_id: str
    key_version: int  # the tenant's current tracking key version
    links: list[str]  # the URLs Tailor put in the email, in order
    delivered_at: datetime | None  # when the provider took it (or, before that, the claim)
    status: str


def _rows(rows: Iterable[Any]) -> list[Any]:
    """Result rows as the untyped tuples they are (ids are never None once stored)."""
    return list(rows)


@dataclass(frozen=True)
class RecentClick:
    send_id: int
    link_index: int
    at: datetime


# Built once: the redirect runs it for every send it has not seen lately, and building a
# statement costs more than running it.
_TRACKED_SENDS = (
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
    .where(col(Send.id).in_(bindparam("send_ids", expanding=True)))
)


async def tracked_sends(
    conn: AsyncConnection, *, send_ids: Collection[int]
) -> dict[int, TrackedSend]:
    """The sends tokens name, with their tenant's key version; an unknown send is left out."""
    if not send_ids:
        return {}
    rows = await conn.execute(_TRACKED_SENDS, {"send_ids": sorted(send_ids)})
    return _tracked(rows.all())


def tracked_sends_now(conn: Connection, *, send_ids: Collection[int]) -> dict[int, TrackedSend]:
    """``tracked_sends`` on a plain SQLite connection (``Database.sqlite_read_in_thread``)."""
    if not send_ids:
        return {}
    return _tracked(conn.execute(_TRACKED_SENDS, {"send_ids": sorted(send_ids)}).all())


def _tracked(rows: Iterable[Any]) -> dict[int, TrackedSend]:
    return {
        int(send_id): TrackedSend(
            send_id=int(send_id),
            tenant_id=tenant_id,
            key_version=version,
            links=list(links or []),
            delivered_at=sent_at or dispatched_at,
            status=status,
        )
        for send_id, tenant_id, version, links, sent_at, dispatched_at, status in _rows(rows)
    }


async def tracked_send(conn: AsyncConnection, *, send_id: int) -> TrackedSend | None:
    """The send a token names, with its tenant's key version; None for an unknown send."""
    return (await tracked_sends(conn, send_ids=[send_id])).get(send_id)


async def recent_clicks(
    conn: AsyncConnection, *, send_ids: Collection[int], since: datetime
) -> list[RecentClick]:
    """The clicks of these sends stored since ``since``, oldest first."""
    if not send_ids:
        return []
    rows = await conn.execute(
        select(col(TrackingHit.send_id), col(TrackingHit.link_index), col(TrackingHit.at))
        .where(
            col(TrackingHit.send_id).in_(sorted(send_ids)),
            col(TrackingHit.kind) == "click",
            col(TrackingHit.at) >= since,
        )
        .order_by(col(TrackingHit.at))
    )
    return [RecentClick(s, i, at) for s, i, at in rows.all() if i is not None]


async def record_hits(conn: AsyncConnection, *, hits: Sequence[Mapping[str, Any]]) -> list[int]:
    """Store hits (``tenant_id, send_id, kind, link_index, human, rule, at``); their ids, in
    order."""
    if not hits:
        return []
    table = TrackingHit.__table__  # type: ignore[attr-defined]  # Core, not ORM: the hot path
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    result = await conn.execute(statement, list(hits))
    return [int(hit_id) for hit_id in result.scalars()]


async def flag_machine_clicks(
    conn: AsyncConnection, *, send_id: int, since: datetime, until: datetime, rule: str
) -> None:
    """The send's clicks between ``since`` and ``until`` taken for a person's are a machine's
    after all (``rule`` says why)."""
    await conn.execute(
        update(TrackingHit)
        .where(
            col(TrackingHit.send_id) == send_id,
            col(TrackingHit.kind) == "click",
            col(TrackingHit.human).is_(True),
            col(TrackingHit.at) >= since,
            col(TrackingHit.at) <= until,
        )
        .values(human=False, rule=rule)
    )


async def still_human(conn: AsyncConnection, *, hit_ids: Collection[int]) -> set[int]:
    """Those of these hits still flagged human."""
    if not hit_ids:
        return set()
    rows = await conn.execute(
        select(col(TrackingHit.id)).where(
            col(TrackingHit.id).in_(sorted(hit_ids)), col(TrackingHit.human).is_(True)
        )
    )
    return {int(hit_id) for hit_id in _rows(rows.scalars())}


async def engaged(
    conn: AsyncConnection, *, send_ids: Collection[int], metrics: Collection[str]
) -> set[tuple[int, str]]:
    """(send id, metric) of these sends' engagement already recorded."""
    if not send_ids or not metrics:
        return set()
    rows = await conn.execute(
        select(col(Engagement.send_id), col(Engagement.metric)).where(
            col(Engagement.send_id).in_(sorted(send_ids)),
            col(Engagement.metric).in_(sorted(metrics)),
        )
    )
    return {(int(send_id), str(metric)) for send_id, metric in _rows(rows.all())}


async def hit_counts(conn: AsyncConnection, *, campaign_id: str) -> dict[tuple[str, bool], int]:
    """A campaign's hits by (kind, human)."""
    rows = await conn.execute(
        select(col(TrackingHit.kind), col(TrackingHit.human), func.count())
        .join(Send, col(Send.id) == col(TrackingHit.send_id))
        .where(col(Send.campaign_id) == campaign_id)
        .group_by(col(TrackingHit.kind), col(TrackingHit.human))
    )
    return {(str(kind), bool(human)): int(n) for kind, human, n in rows.all()}
