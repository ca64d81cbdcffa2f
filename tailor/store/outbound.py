"""Outbound webhook endpoints and their outbox (``outbound_delivery``).

Publishing is one read of the tenants' active endpoints and one multi-row INSERT, inside the
caller's transaction. An endpoint's queue is its ``pending`` rows in id order, read through the
``(endpoint_id, status, id)`` index, so a batch costs the same with ten rows queued or a million.
Every state change is conditional on the row still being ``pending``, so a late retry or a
replay running alongside never moves a row backwards.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from tailor.errors import NotFound
from tailor.models import (
    Contact,
    DeliveryStatus,
    EndpointStatus,
    OutboundDelivery,
    Send,
    WebhookEndpoint,
)
from tailor.store.keyset import below

_PENDING = DeliveryStatus.PENDING.value


def _still_pending(delivery_ids: Collection[int]) -> tuple[Any, Any]:
    """These rows, where nothing has settled them yet (a retry never moves a row back)."""
    return (
        col(OutboundDelivery.id).in_(sorted(delivery_ids)),
        col(OutboundDelivery.status) == _PENDING,
    )


@dataclass(frozen=True, slots=True)
class Subscription:
    endpoint_id: str
    tenant_id: str
    event_types: list[str]


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """An outbox row as it is delivered, with the ids looked up at delivery time."""

    delivery_id: int
    event_id: str
    event_type: str
    occurred_at: datetime
    contact_id: int | None = None
    send_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None  # the contact's external id (Segment's userId), if it has one
    campaign_id: str | None = None


@dataclass(frozen=True, slots=True)
class EndpointRef:
    tenant_id: str
    endpoint_id: str


# --- publishing --------------------------------------------------------------------------------


async def subscriptions(
    conn: AsyncConnection, *, tenant_ids: Collection[str]
) -> list[Subscription]:
    """The active endpoints of these tenants and the event types each takes."""
    if not tenant_ids:
        return []
    rows = await conn.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.tenant_id, WebhookEndpoint.event_types).where(  # type: ignore[call-overload]
            col(WebhookEndpoint.tenant_id).in_(sorted(tenant_ids)),
            col(WebhookEndpoint.status) == EndpointStatus.ACTIVE.value,
        )
    )
    return [Subscription(*row) for row in rows]


async def queue(conn: AsyncConnection, *, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append outbox rows (``OutboundDelivery`` columns), all in one executemany."""
    if rows:
        await conn.execute(insert(OutboundDelivery), list(rows))


# --- endpoints (the API) -----------------------------------------------------------------------


async def add_endpoint(*, session: AsyncSession, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    session.add(endpoint)
    await session.flush()
    return endpoint


async def endpoints_of(*, session: AsyncSession, tenant_id: str) -> list[WebhookEndpoint]:
    """A tenant's endpoints, oldest first; deleted ones are gone."""
    query = select(WebhookEndpoint).where(
        col(WebhookEndpoint.tenant_id) == tenant_id,
        col(WebhookEndpoint.status) != EndpointStatus.DELETED.value,
    )
    return list((await session.execute(query.order_by(col(WebhookEndpoint.created_at)))).scalars())


async def get_endpoint(
    *, session: AsyncSession, tenant_id: str, endpoint_id: str
) -> WebhookEndpoint:
    """The tenant's endpoint; another tenant's, a deleted or a missing one is NotFound alike."""
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if (
        endpoint is None
        or endpoint.tenant_id != tenant_id
        or endpoint.status == EndpointStatus.DELETED
    ):
        raise NotFound("webhook endpoint", endpoint_id)
    return endpoint


async def pending_count(session: AsyncSession, *, endpoint_id: str, cap: int) -> int:
    """Queued deliveries of an endpoint, counted up to ``cap`` (a backlog can be millions)."""
    queued = (
        select(col(OutboundDelivery.id))
        .where(
            col(OutboundDelivery.endpoint_id) == endpoint_id,
            col(OutboundDelivery.status) == _PENDING,
        )
        .limit(cap)
        .subquery()
    )
    return int((await session.execute(select(func.count()).select_from(queued))).scalar_one())


async def dead_letters(
    *, session: AsyncSession, endpoint_id: str, after: int | None, limit: int
) -> list[OutboundDelivery]:
    """A keyset page of an endpoint's dead letters, newest first."""
    query = select(OutboundDelivery).where(
        col(OutboundDelivery.endpoint_id) == endpoint_id,
        col(OutboundDelivery.status) == DeliveryStatus.DEAD.value,
        below(col(OutboundDelivery.id), after),
    )
    rows = await session.execute(query.order_by(col(OutboundDelivery.id).desc()).limit(limit))
    return list(rows.scalars())


_COPIED = ("tenant_id", "endpoint_id", "event_id", "event_type", "contact_id", "send_id", "data",
           "occurred_at")  # fmt: skip


async def replay(
    conn: AsyncConnection,
    *,
    endpoint_id: str,
    delivery_ids: Collection[int] | None,
    now: datetime,
    limit: int,
) -> tuple[int, int]:
    """Queue dead letters again (these, or all, oldest first, at most ``limit``): each as a new
    pending row with the same event id, the old one marked ``replayed``. Returns (replayed,
    dead letters still left)."""
    dead = [
        col(OutboundDelivery.endpoint_id) == endpoint_id,
        col(OutboundDelivery.status) == DeliveryStatus.DEAD.value,
    ]
    if delivery_ids is not None:
        dead.append(col(OutboundDelivery.id).in_(sorted(delivery_ids)))
    oldest = select(col(OutboundDelivery.id)).where(*dead).order_by(col(OutboundDelivery.id))
    # Flip first and copy what was flipped: a concurrent replay of the same rows gets the rows
    # the other did not, and nothing is queued twice.
    flipped = await conn.execute(
        update(OutboundDelivery)
        .where(col(OutboundDelivery.id).in_(oldest.limit(limit).scalar_subquery()), *dead)
        .values(status=DeliveryStatus.REPLAYED.value, settled_at=now)
        .returning(col(OutboundDelivery.id))
    )
    ids = sorted(int(i) for i in flipped.scalars() if i is not None)
    if ids:
        columns = [getattr(OutboundDelivery, name) for name in _COPIED]
        rows = await conn.execute(
            select(OutboundDelivery.id, *columns)  # type: ignore[call-overload]
            .where(col(OutboundDelivery.id).in_(ids))
            .order_by(col(OutboundDelivery.id))
        )
        copies = [
            {**dict(zip(_COPIED, row[1:], strict=True)), "replay_of": row[0], "created_at": now,
             "status": _PENDING, "attempts": 0}
            for row in rows
        ]  # fmt: skip
        await conn.execute(insert(OutboundDelivery), copies)
    left = await conn.execute(select(func.count()).select_from(OutboundDelivery).where(*dead))
    return len(ids), int(left.scalar_one())


# --- delivering (the workflow's activities) -------------------------------------------------------


async def endpoint_for_delivery(
    conn: AsyncConnection, *, endpoint_id: str
) -> WebhookEndpoint | None:
    row = (
        await conn.execute(select(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint_id))
    ).first()
    return None if row is None else WebhookEndpoint.model_validate(row._mapping)


async def pending_ids(conn: AsyncConnection, *, endpoint_id: str, limit: int) -> list[int]:
    """The ids of the next batch: the endpoint's oldest pending rows."""
    rows = await conn.execute(
        select(col(OutboundDelivery.id))
        .where(
            col(OutboundDelivery.endpoint_id) == endpoint_id,
            col(OutboundDelivery.status) == _PENDING,
        )
        .order_by(col(OutboundDelivery.id))
        .limit(limit)
    )
    return [int(i) for i in rows.scalars() if i is not None]


async def load_batch(
    conn: AsyncConnection, *, endpoint_id: str, delivery_ids: Collection[int]
) -> list[QueuedEvent]:
    """The batch's rows still pending, in id order, with each contact's user id and each
    send's campaign as they are now."""
    if not delivery_ids:
        return []
    rows = await conn.execute(
        select(  # type: ignore[call-overload]
            OutboundDelivery.id,
            OutboundDelivery.event_id,
            OutboundDelivery.event_type,
            OutboundDelivery.occurred_at,
            OutboundDelivery.contact_id,
            OutboundDelivery.send_id,
            OutboundDelivery.data,
            Contact.external_id,
            Send.campaign_id,
        )  # fmt: skip
        .outerjoin(Contact, col(Contact.id) == col(OutboundDelivery.contact_id))
        .outerjoin(Send, col(Send.id) == col(OutboundDelivery.send_id))
        .where(
            col(OutboundDelivery.id).in_(sorted(delivery_ids)),
            col(OutboundDelivery.endpoint_id) == endpoint_id,
            col(OutboundDelivery.status) == _PENDING,
        )
        .order_by(col(OutboundDelivery.id))
    )
    return [QueuedEvent(*row) for row in rows]


async def mark_delivered(
    conn: AsyncConnection, *, endpoint_id: str, delivery_ids: Collection[int], now: datetime
) -> int:
    """Settle a batch the receiver took; the endpoint's run of failed batches ends."""
    done = await conn.execute(
        update(OutboundDelivery)
        .where(*_still_pending(delivery_ids))
        .values(status=DeliveryStatus.DELIVERED.value, settled_at=now, last_attempt_at=now,
                attempts=col(OutboundDelivery.attempts) + 1)
    )  # fmt: skip
    await conn.execute(
        update(WebhookEndpoint)
        .where(col(WebhookEndpoint.id) == endpoint_id)
        .values(failing_batches=0, last_delivered_at=now)
    )
    return int(done.rowcount)


async def record_failure(
    conn: AsyncConnection,
    *,
    endpoint_id: str,
    delivery_ids: Collection[int],
    error: str,
    now: datetime,
) -> None:
    """One failed attempt at a batch: counted on its rows, shown on the endpoint."""
    await conn.execute(
        update(OutboundDelivery)
        .where(*_still_pending(delivery_ids))
        .values(attempts=col(OutboundDelivery.attempts) + 1, last_error=error[:300],
                last_attempt_at=now)
    )  # fmt: skip
    await conn.execute(
        update(WebhookEndpoint)
        .where(col(WebhookEndpoint.id) == endpoint_id)
        .values(last_failed_at=now, last_error=error[:300])
    )


async def dead_letter(
    conn: AsyncConnection,
    *,
    endpoint_id: str,
    delivery_ids: Collection[int],
    error: str,
    now: datetime,
) -> tuple[int, int]:
    """A batch whose retries ran out becomes dead letters. Returns (rows dead-lettered, the
    endpoint's dead-lettered batches in a row)."""
    done = await conn.execute(
        update(OutboundDelivery)
        .where(*_still_pending(delivery_ids))
        .values(status=DeliveryStatus.DEAD.value, last_error=error[:300], settled_at=now)
    )  # fmt: skip
    run = await conn.execute(
        update(WebhookEndpoint)
        .where(col(WebhookEndpoint.id) == endpoint_id)
        .values(failing_batches=col(WebhookEndpoint.failing_batches) + 1, last_failed_at=now,
                last_error=error[:300])
        .returning(col(WebhookEndpoint.failing_batches))
    )  # fmt: skip
    return int(done.rowcount), int(run.scalar_one())


async def disable(conn: AsyncConnection, *, endpoint_id: str, reason: str, now: datetime) -> int:
    """Turn an endpoint off for failing; its pending rows become dead letters (returned: how
    many), so the outbox of a receiver that is gone for good stops growing."""
    await conn.execute(
        update(WebhookEndpoint)
        .where(col(WebhookEndpoint.id) == endpoint_id)
        .where(col(WebhookEndpoint.status) == EndpointStatus.ACTIVE.value)
        .values(status=EndpointStatus.DISABLED.value, disabled_reason=reason[:300], updated_at=now)
    )
    moved = await conn.execute(
        update(OutboundDelivery)
        .where(col(OutboundDelivery.endpoint_id) == endpoint_id)
        .where(col(OutboundDelivery.status) == _PENDING)
        .values(status=DeliveryStatus.DEAD.value, last_error=reason[:300], settled_at=now)
    )
    return int(moved.rowcount)


# --- the relay (waking endpoint workflows) and housekeeping ---------------------------------------


async def last_delivery_id(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.max(OutboundDelivery.id)))).scalar() or 0)


async def queued_since(conn: AsyncConnection, *, after_id: int) -> tuple[int, list[EndpointRef]]:
    """Endpoints with rows added after ``after_id``, and the newest id seen (a range scan of
    the primary key over the new rows only)."""
    rows = (
        await conn.execute(
            select(  # type: ignore[call-overload]
                OutboundDelivery.tenant_id,
                OutboundDelivery.endpoint_id,
                func.max(OutboundDelivery.id),
            )
            .where(col(OutboundDelivery.id) > after_id)
            .group_by(col(OutboundDelivery.tenant_id), col(OutboundDelivery.endpoint_id))
        )  # fmt: skip
    ).all()
    newest = max((int(row[2]) for row in rows), default=after_id)
    return newest, [EndpointRef(row[0], row[1]) for row in rows]


async def endpoints_with_pending(conn: AsyncConnection) -> list[EndpointRef]:
    """Every active endpoint with a pending row (one index probe per endpoint)."""
    pending = exists().where(
        col(OutboundDelivery.endpoint_id) == col(WebhookEndpoint.id),
        col(OutboundDelivery.status) == _PENDING,
    )
    rows = await conn.execute(
        select(WebhookEndpoint.tenant_id, WebhookEndpoint.id).where(  # type: ignore[call-overload]
            col(WebhookEndpoint.status) == EndpointStatus.ACTIVE.value, pending
        )
    )
    return [EndpointRef(*row) for row in rows]


async def prune(conn: AsyncConnection, *, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` settled rows (delivered, replayed) older than ``before``, and rows
    of deleted endpoints; oldest first. Dead letters stay until replayed."""
    deleted_endpoints = select(col(WebhookEndpoint.id)).where(
        col(WebhookEndpoint.status) == EndpointStatus.DELETED.value
    )
    finished = [DeliveryStatus.DELIVERED.value, DeliveryStatus.REPLAYED.value]
    settled = col(OutboundDelivery.status).in_(finished) | col(OutboundDelivery.endpoint_id).in_(
        deleted_endpoints
    )
    oldest = (
        select(col(OutboundDelivery.id))
        .where(col(OutboundDelivery.created_at) < before, settled)
        .order_by(col(OutboundDelivery.id))
        .limit(limit)
    )
    ids = [int(i) for i in (await conn.execute(oldest)).scalars() if i is not None]
    if not ids:
        return 0
    done = await conn.execute(delete(OutboundDelivery).where(col(OutboundDelivery.id).in_(ids)))
    return int(done.rowcount)
