"""A/B tests in the store: the test row, one campaign per variant cell, engagement counts.

The audience is cut into deterministic slices (``tailor.store.segments.Slice``): variant i's cell is
buckets [i·w, (i+1)·w) with w = fraction·10,000 / N; the rollout is every bucket from the end
of the last cell. So no one is in two cells, and the rollout never reaches a tested person.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from tailor.errors import NotFound
from tailor.models import (
    AbTest,
    AbTestStatus,
    Campaign,
    CampaignKind,
    Engagement,
    Generator,
    Send,
    utcnow,
)
from tailor.store.campaigns import DELIVERED, create_campaign
from tailor.store.keyset import TimeKey, older_than
from tailor.store.segments import BUCKETS


@dataclass(frozen=True)
class VariantSpec:
    key: str
    template_version_id: int
    generator: Generator = Generator.AUTO  # rules: the plain arm of an AI vs plain test


@dataclass(frozen=True)
class VariantCounts:
    key: str
    campaign_id: str
    sent: int
    successes: int


def new_test_id() -> str:
    return f"ab_{secrets.token_hex(8)}"


def salt_of(test_id: str) -> int:
    return int(hashlib.sha256(test_id.encode()).hexdigest()[:8], 16) % BUCKETS


def cell_slices(
    test_id: str, variants: int, fraction: float
) -> tuple[list[dict[str, int]], dict[str, int]]:
    """Each variant's slice, and the rollout's (the rest of the audience)."""
    salt = salt_of(test_id)
    width = int(BUCKETS * fraction) // variants
    if width < 1:
        raise ValueError("test_fraction is too small for this many variants")
    cells = [{"salt": salt, "start": i * width, "end": (i + 1) * width} for i in range(variants)]
    return cells, {"salt": salt, "start": variants * width, "end": BUCKETS}


async def create_ab_test(
    *,
    session: AsyncSession,
    tenant_id: str,
    name: str,
    segment: dict[str, Any],
    variants: Sequence[VariantSpec],
    metric: str,
    test_fraction: float,
    threshold: float,
    min_sent_per_variant: int,
    window_s: int,
    default_variant: str,
) -> AbTest:
    test_id = new_test_id()
    cells, _ = cell_slices(test_id, len(variants), test_fraction)
    rows: list[dict[str, Any]] = []
    for variant, cell in zip(variants, cells, strict=True):
        campaign = await create_campaign(
            session=session,
            tenant_id=tenant_id,
            name=f"{name} · variant {variant.key}",
            template_version_id=variant.template_version_id,
            segment={**segment, "sample": cell},
            kind=CampaignKind.AB_CELL,
            generator=variant.generator,
        )
        rows.append(
            {
                "key": variant.key,
                "template_version_id": variant.template_version_id,
                "generator": variant.generator.value,
                "campaign_id": campaign.id,
            }
        )
    test = AbTest(
        id=test_id,
        tenant_id=tenant_id,
        name=name,
        segment=segment,
        metric=metric,
        test_fraction=test_fraction,
        threshold=threshold,
        min_sent_per_variant=min_sent_per_variant,
        window_s=window_s,
        default_variant=default_variant,
        variants=rows,
        workflow_id=f"abtest-{test_id}",
    )
    session.add(test)
    await session.flush()
    return test


async def get_ab_test(
    *, session: AsyncSession, test_id: str, tenant_id: str | None = None
) -> AbTest:
    test = await session.get(AbTest, test_id)
    if test is None or (tenant_id is not None and test.tenant_id != tenant_id):
        raise NotFound("A/B test", test_id)
    return test


@dataclass(frozen=True)
class AbTestSummary:
    """An A/B test as a list shows it: its variants' keys, not their cells or counts."""

    id: str
    name: str
    status: str
    metric: str
    variants: list[str]
    winner: str | None
    created_at: datetime
    decided_at: datetime | None


async def list_ab_tests(
    *,
    session: AsyncSession,
    tenant_id: str,
    after: TimeKey | None,
    limit: int,
    status: AbTestStatus | None = None,
) -> list[AbTestSummary]:
    """A keyset page of the tenant's A/B tests, newest first (``tailor.store.keyset``)."""
    where = [
        col(AbTest.tenant_id) == tenant_id,
        older_than(col(AbTest.created_at), col(AbTest.id), after),
    ]
    if status is not None:
        where.append(col(AbTest.status) == status.value)
    rows = await session.execute(
        select(AbTest)
        .where(*where)
        .order_by(col(AbTest.created_at).desc(), col(AbTest.id).desc())
        .limit(limit)
    )
    return [
        AbTestSummary(
            id=t.id, name=t.name, status=t.status, metric=t.metric,
            variants=[str(v["key"]) for v in t.variants], winner=t.winner,
            created_at=t.created_at, decided_at=t.decided_at,
        )
        for t in rows.scalars()
    ]  # fmt: skip


async def variant_counts(conn: AsyncConnection, *, test: AbTest) -> list[VariantCounts]:
    """Per variant: emails delivered, and people who did the test's metric at least once."""
    campaign_ids = [v["campaign_id"] for v in test.variants]
    sent: dict[str, int] = dict(
        (
            await conn.execute(
                select(Send.campaign_id, func.count())  # type: ignore[call-overload]
                .where(col(Send.campaign_id).in_(campaign_ids), col(Send.status).in_(DELIVERED))
                .group_by(col(Send.campaign_id))
            )
        ).all()
    )
    successes: dict[str, int] = dict(
        (
            await conn.execute(
                select(Engagement.campaign_id, func.count())  # type: ignore[call-overload]
                .where(
                    col(Engagement.campaign_id).in_(campaign_ids),
                    col(Engagement.metric) == test.metric,
                )
                .group_by(col(Engagement.campaign_id))
            )
        ).all()
    )
    return [
        VariantCounts(
            v["key"],
            v["campaign_id"],
            sent.get(v["campaign_id"], 0),
            successes.get(v["campaign_id"], 0),
        )  # fmt: skip
        for v in test.variants
    ]


async def set_ab_status(
    conn: AsyncConnection,
    *,
    test_id: str,
    status: AbTestStatus,
    winner: str | None = None,
    decision: dict[str, Any] | None = None,
    rollout_campaign_id: str | None = None,
) -> None:
    values: dict[str, Any] = {"status": status.value}
    if winner is not None:
        values.update(winner=winner, decision=decision, decided_at=utcnow())
    if rollout_campaign_id is not None:
        values["rollout_campaign_id"] = rollout_campaign_id
    await conn.execute(update(AbTest).where(col(AbTest.id) == test_id).values(**values))


# --- The API's writes --------------------------------------------------------------------------


async def delete_ab_test(*, conn: AsyncConnection, test: AbTest) -> None:
    """Remove a test whose workflow never started, and its cells' campaigns, so nothing is left
    half-written."""
    await conn.execute(delete(AbTest).where(col(AbTest.id) == test.id))
    cells = [v["campaign_id"] for v in test.variants]
    await conn.execute(delete(Campaign).where(col(Campaign.id).in_(cells)))
