"""The human review queue: LLM-written content a person approves (as written or edited) or
rejects before any recipient gets it.

One review item covers one cluster of a campaign: every recipient of that cluster is *held*
(``send.status = 'held'``, ``send.review_id``) until someone decides. A decision is committed
here first and only then signalled to the campaign workflow, so the database is the truth and
the signal is a wake-up call: a lost signal delays the held sends, never misdirects them.

    pending ──► approved   held sends get the approved content
            ├─► rejected   held sends get the rules-tier email
            └─► expired    nobody decided in time, or the campaign ended: rules-tier email
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from tailor.errors import NotFound, TailorError
from tailor.models import ReviewItem, ReviewStatus, Send, SendStatus, utcnow
from tailor.store.keyset import below


class AlreadyDecided(TailorError):
    """A review that is no longer pending (HTTP 409)."""

    def __init__(self, review_id: int, status: str) -> None:
        super().__init__(f"review {review_id} is already {status}; a decision is final")
        self.review_id = review_id
        self.status = status


@dataclass(frozen=True)
class ClusterReview:
    """What generation needs to know about a cluster's review."""

    id: int
    status: ReviewStatus
    provider: str
    model: str
    content: dict[str, Any]  # the approved content once approved, else what the model wrote
    edited: bool


async def open_review(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    campaign_id: str,
    cluster_key: str,
    cluster: dict[str, Any],
    provider: str,
    model: str,
    prompt_version: str,
    content: dict[str, Any],
    evaluation: dict[str, Any],
    reason: str,
) -> ClusterReview:
    """The cluster's review, opened now unless another chunk or worker opened it first."""
    existing = await cluster_review(conn, campaign_id=campaign_id, cluster_key=cluster_key)
    if existing is not None:
        return existing
    await conn.execute(
        insert(ReviewItem).values(
            tenant_id=tenant_id, campaign_id=campaign_id, cluster_key=cluster_key,
            cluster=cluster, provider=provider, model=model, prompt_version=prompt_version,
            content=content, evaluation=evaluation, reason=reason[:1000],
            status=ReviewStatus.PENDING.value, edited=False, created_at=utcnow(),
        )
    )  # fmt: skip
    opened = await cluster_review(conn, campaign_id=campaign_id, cluster_key=cluster_key)
    assert opened is not None
    return opened


_COLUMNS = (ReviewItem.id, ReviewItem.status, ReviewItem.provider, ReviewItem.model,
            ReviewItem.content, ReviewItem.final_content, ReviewItem.edited)  # fmt: skip


async def cluster_review(
    conn: AsyncConnection, *, campaign_id: str, cluster_key: str
) -> ClusterReview | None:
    row = (
        await conn.execute(
            select(*_COLUMNS).where(col(ReviewItem.campaign_id) == campaign_id,  # type: ignore[call-overload]
                                    col(ReviewItem.cluster_key) == cluster_key)
        )
    ).first()  # fmt: skip
    return _review(row)


async def review_by_id(conn: AsyncConnection, *, review_id: int) -> ClusterReview | None:
    row = (
        await conn.execute(select(*_COLUMNS).where(col(ReviewItem.id) == review_id))  # type: ignore[call-overload]
    ).first()
    return _review(row)


def _review(row: Any) -> ClusterReview | None:
    if row is None:
        return None
    review_id, status, provider, model, content, final, edited = row
    return ClusterReview(
        review_id, ReviewStatus(status), provider, model, final or content, bool(edited)
    )


async def hold(conn: AsyncConnection, *, send_ids: Sequence[int], review_id: int) -> None:
    for start in range(0, len(send_ids), 1000):
        await conn.execute(
            update(Send)
            .where(
                col(Send.id).in_(send_ids[start : start + 1000]),
                col(Send.status) == SendStatus.PENDING.value,
            )
            .values(status=SendStatus.HELD.value, review_id=review_id)
        )


def _decided(campaign_id: str) -> Any:
    return select(ReviewItem.id).where(  # type: ignore[call-overload]
        col(ReviewItem.campaign_id) == campaign_id,
        col(ReviewItem.status) != ReviewStatus.PENDING.value,
    )


async def release_decided(conn: AsyncConnection, *, campaign_id: str) -> None:
    """Held sends whose review is decided become pending again, still tagged with it."""
    await conn.execute(
        update(Send)
        .where(
            col(Send.campaign_id) == campaign_id,
            col(Send.status) == SendStatus.HELD.value,
            col(Send.review_id).in_(_decided(campaign_id)),
        )
        .values(status=SendStatus.PENDING.value)
    )


async def released_sends(conn: AsyncConnection, *, campaign_id: str, limit: int) -> dict[int, int]:
    """Released sends not yet delivered: contact id -> review id, lowest contact ids first."""
    rows = await conn.execute(
        select(Send.contact_id, Send.review_id)  # type: ignore[call-overload]
        .where(
            col(Send.campaign_id) == campaign_id,
            col(Send.status) == SendStatus.PENDING.value,
            col(Send.review_id).in_(_decided(campaign_id)),
        )
        .order_by(col(Send.contact_id))
        .limit(limit)
    )
    return {int(contact_id): int(review_id) for contact_id, review_id in rows}


@dataclass(frozen=True)
class Backlog:
    open_reviews: int  # still pending a decision
    held: int  # sends waiting on them


async def backlog(conn: AsyncConnection, *, campaign_id: str) -> Backlog:
    """What of a campaign still waits for a person."""
    pending = (
        await conn.execute(
            select(func.count()).where(
                col(ReviewItem.campaign_id) == campaign_id,
                col(ReviewItem.status) == ReviewStatus.PENDING.value,
            )
        )
    ).scalar_one()
    held = (
        await conn.execute(
            select(func.count()).where(
                col(Send.campaign_id) == campaign_id, col(Send.status) == SendStatus.HELD.value
            )
        )
    ).scalar_one()
    return Backlog(int(pending), int(held))


async def expire_open(conn: AsyncConnection, *, campaign_id: str, why: str) -> int:
    result = await conn.execute(
        update(ReviewItem)
        .where(
            col(ReviewItem.campaign_id) == campaign_id,
            col(ReviewItem.status) == ReviewStatus.PENDING.value,
        )
        .values(status=ReviewStatus.EXPIRED.value, decided_by="system", note=why,
                decided_at=utcnow())
    )  # fmt: skip
    return int(result.rowcount or 0)


async def decide(
    conn: AsyncConnection,
    *,
    review_id: int,
    status: ReviewStatus,
    reviewer: str,
    note: str | None,
    final_content: dict[str, Any] | None = None,
    edited: bool = False,
) -> None:
    """Record a decision; only a pending review can be decided, and only once."""
    result = await conn.execute(
        update(ReviewItem)
        .where(col(ReviewItem.id) == review_id,
               col(ReviewItem.status) == ReviewStatus.PENDING.value)
        .values(status=status.value, decided_by=reviewer, note=note,
                final_content=final_content, edited=edited, decided_at=utcnow())
    )  # fmt: skip
    if not result.rowcount:
        current = (
            await conn.execute(select(ReviewItem.status).where(col(ReviewItem.id) == review_id))  # type: ignore[call-overload]
        ).scalar_one()
        raise AlreadyDecided(review_id, current)


async def held_counts(conn: AsyncConnection, *, review_ids: Sequence[int]) -> dict[int, int]:
    if not review_ids:
        return {}
    rows = await conn.execute(
        select(Send.review_id, func.count())  # type: ignore[call-overload]
        .where(col(Send.review_id).in_(review_ids), col(Send.status) == SendStatus.HELD.value)
        .group_by(col(Send.review_id))
    )
    return {int(rid): int(n) for rid, n in rows.all()}


# --- The API's reads ---------------------------------------------------------------------------


async def get_review(*, session: AsyncSession, tenant_id: str, review_id: int) -> ReviewItem:
    """The tenant's review as stored now: read again even if the session has seen it, since
    ``decide`` writes on the session's connection, behind the ORM's back."""
    item = await session.get(ReviewItem, review_id, populate_existing=True)
    if item is None or item.tenant_id != tenant_id:
        raise NotFound("review", review_id)
    return item


async def tenant_reviews(
    *,
    session: AsyncSession,
    tenant_id: str,
    status: ReviewStatus | None = None,
    campaign_id: str | None = None,
    after: int | None = None,
    limit: int = 50,
) -> list[ReviewItem]:
    """A keyset page of the tenant's reviews, newest first (``tailor.store.keyset``)."""
    where = [col(ReviewItem.tenant_id) == tenant_id, below(col(ReviewItem.id), after)]
    if status is not None:
        where.append(col(ReviewItem.status) == status.value)
    if campaign_id is not None:
        where.append(col(ReviewItem.campaign_id) == campaign_id)
    rows = await session.execute(
        select(ReviewItem).where(*where).order_by(col(ReviewItem.id).desc()).limit(limit)
    )
    return list(rows.scalars())
