"""Contacts as the senders and the daily features job read and update them: profiles by id,
pages of everyone, derived features, and the learned best hours of a timezone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from tailor.errors import NotFound
from tailor.models import Contact


def _contact(row: Any) -> Contact:
    return Contact.model_validate(dict(row._mapping))


async def contacts_by_id(*, session: AsyncSession, contact_ids: Sequence[int]) -> list[Contact]:
    rows = await session.execute(select(Contact).where(col(Contact.id).in_(list(contact_ids))))
    return list(rows.scalars())


async def first_contacts(*, session: AsyncSession, tenant_id: str, limit: int) -> list[Contact]:
    """A tenant's first contacts by id (the benchmark's plain baseline loop)."""
    rows = await session.execute(
        select(Contact).where(col(Contact.tenant_id) == tenant_id)
        .order_by(col(Contact.id)).limit(limit)
    )  # fmt: skip
    return list(rows.scalars())


async def read_contact(conn: AsyncConnection, *, contact_id: int) -> Contact:
    row = (await conn.execute(select(Contact).where(col(Contact.id) == contact_id))).first()
    if row is None:
        raise NotFound("contact", contact_id)
    return _contact(row)


async def order_count(conn: AsyncConnection, *, contact_id: int) -> int | None:
    count = await conn.scalar(
        select(Contact.order_count).where(col(Contact.id) == contact_id)  # type: ignore[call-overload]
    )
    return int(count) if count is not None else None


async def contacts_page(
    conn: AsyncConnection, *, after_contact_id: int, size: int
) -> list[Contact]:
    """A keyset page of contacts, all tenants, by id."""
    rows = await conn.execute(
        select(Contact)
        .where(col(Contact.id) > after_contact_id)
        .order_by(col(Contact.id))
        .limit(size)
    )
    return [_contact(r) for r in rows]


async def update_derived(conn: AsyncConnection, *, updates: Sequence[dict[str, Any]]) -> None:
    """Write derived features: each update has the contact's id as ``b_id`` and the columns.
    An erased contact gets none (their events are kept as facts without identity, and would
    otherwise give the blanked row a profile again)."""
    if updates:
        await conn.execute(
            update(Contact).where(
                col(Contact.id) == bindparam("b_id"), col(Contact.erased_at).is_(None)
            ),
            updates,
        )


async def best_hour_counts(
    conn: AsyncConnection, *, tenant_id: str, timezone: str
) -> dict[int, int]:
    """How many of a tenant's people in this timezone have each learned best hour."""
    rows = await conn.execute(
        select(Contact.best_send_hour, func.count())  # type: ignore[call-overload]
        .where(
            col(Contact.tenant_id) == tenant_id,
            col(Contact.timezone) == timezone,
            col(Contact.best_send_hour).is_not(None),
        )
        .group_by(col(Contact.best_send_hour))
    )
    return {int(hour): int(n) for hour, n in rows.all()}


async def tenant_timezones(conn: AsyncConnection, *, tenant_id: str) -> list[str]:
    """The timezones a tenant's contacts live in, sorted."""
    rows = await conn.execute(
        select(Contact.timezone)  # type: ignore[call-overload]
        .where(col(Contact.tenant_id) == tenant_id)
        .distinct()
    )
    return sorted(rows.scalars())
