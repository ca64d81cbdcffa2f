"""Which email earned an order.

Last touch: an ``Order Completed`` is attributed to the last email the person clicked (a human
click, ``tailor.tracking.machines``) within the tenant's click window before it. Failing that,
the weaker rule: the last email they opened within the open window; such conversions are
labelled ``open`` and reported apart, because an open proves far less than a click. An order
with neither is stored as ``none``: it still counts for lift.

Attribution is one rule; lift is another. A holdout group is never mailed, so it can have no
clicks: comparing it with the mailed group needs a measure both sides can have, "the email was
followed by an order within the window, clicked or not" (``ordered``). Every email the person got
(or was held back from) in the click window before the order gets that mark, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from tailor.store.conversions import (
    Touch,
    attribution_windows,
    emails_before,
    last_touch,
    record_conversion,
)
from tailor.store.events import ORDER_COMPLETED, StoredEvent
from tailor.store.rollups import count_events, count_firsts, mark_cohorts


@dataclass(frozen=True, slots=True)
class Attributed:
    """An order attributed to an email: what the caller passes on (A/B, features, journeys)."""

    send_id: int
    rule: str  # click or open
    at: datetime  # the order's time


async def attribute_orders(
    conn: AsyncConnection, *, tenant_id: str, events: Sequence[StoredEvent]
) -> list[Attributed]:
    """Attribute the newly stored orders among ``events``, in the caller's transaction."""
    orders = [e for e in events if e.name == ORDER_COMPLETED and e.contact_id is not None]
    if not orders:
        return []
    windows = await attribution_windows(conn, tenant_id=tenant_id)
    attributed: list[Attributed] = []
    for order in orders:
        assert order.contact_id is not None
        at, contact = order.occurred_at, order.contact_id
        click_since = at - timedelta(hours=windows.click_hours)
        touch: Touch | None = await last_touch(
            conn, contact_id=contact, kind="click", since=click_since, until=at
        )
        rule = "click"
        if touch is None and windows.open_hours > 0:
            touch = await last_touch(
                conn, contact_id=contact, kind="open",
                since=at - timedelta(hours=windows.open_hours), until=at,
            )  # fmt: skip
            rule = "open"
        if touch is None:
            rule = "none"
        revenue = order.revenue_cents or 0
        if not await record_conversion(
            conn, tenant_id=tenant_id, event_id=order.id, contact_id=contact, touch=touch,
            rule=rule, revenue_cents=revenue, occurred_at=at,
        ):  # fmt: skip
            continue  # attributed before: count nothing twice
        if touch is not None:
            suffix = "_open" if rule == "open" else ""
            await count_events(conn, events=[("conversions" + suffix, touch.send_id, at)])
            if revenue:
                await count_events(
                    conn, events=[(f"revenue{suffix}_cents", touch.send_id, at)],
                    amounts={touch.send_id: revenue},
                )  # fmt: skip
            attributed.append(Attributed(touch.send_id, rule, at))
        followed = await emails_before(conn, contact_id=contact, since=click_since, until=at)
        await count_firsts(conn, firsts=[("ordered", send_id, at) for send_id in followed])
        await mark_cohorts(conn, marks=[(contact, "order", at)])
    return attributed
