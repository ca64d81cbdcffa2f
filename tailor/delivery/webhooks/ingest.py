"""Take verified ``EspEvent`` s into the store, in one transaction per request.

For each batch: store every event once (provider event id); for those stored *now* (a duplicate
changes nothing a second time) find the send by Tailor's send id or Message-ID, move the send's
``esp_state`` up the ranking of ``events.py``, keep each contact's count of soft bounces in a row
(a delivery ends the run), and write the consent ledger: a hard bounce, a complaint or
``soft_bounce_limit`` soft bounces in a row append ``suppressed``, an ESP unsubscribe appends
``revoked`` (each once: not when the newest row already says so).

Stopping running campaigns relies on the ledger: every send is claimed by a statement that checks
the contact's newest consent is ``granted`` (``tailor.store.sends.claim_for_dispatch``), so a
suppressed or revoked address is not mailed again by any campaign or journey, running or later,
without signalling workflows for each of a thousand events.

Events about no send Tailor knows (another system's mail on the same ESP account) are stored
without a tenant and change nothing.

Opens and clicks are stored, and the people's among them (``tailor.tracking.machines``, on the
user agent and address the provider saw, and its own machine flag: SendGrid's MPP indicator)
are returned as ``engagements``, the first of each kind per send in the batch, for the caller
to engage in the background like the pixel's (``Tracker.engage_reported``), never in the
request: that keeps batches at their speed, and since only a send's first open and first click
count, a pixel open and the provider's report of it count once whichever comes first.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from weakref import WeakKeyDictionary

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from tailor.db import Database
from tailor.delivery.webhooks.events import RANK, SUPPRESSING, EspEvent, EventKind, advance
from tailor.models import ConsentStatus
from tailor.outbound import esp_event, publish
from tailor.store.consent import order_against_claims
from tailor.store.esp_events import (
    LedgerChange,
    SendRef,
    append_consent_changes,
    count_soft_bounces,
    find_sends,
    insert_new_events,
    raise_esp_states,
)
from tailor.store.rollups import count_firsts
from tailor.tracking.machines import Hit, classify
from tailor.tracking.tokens import TrackingKind

COUNTED = frozenset(
    {EventKind.DELIVERED, EventKind.BOUNCE_HARD, EventKind.BOUNCE_SOFT, EventKind.COMPLAINT,
     EventKind.UNSUBSCRIBE}
)  # fmt: skip
FLAGGING = frozenset({EventKind.BOUNCE_HARD, EventKind.COMPLAINT})
METHODS = {EventKind.BOUNCE_HARD: "bounce", EventKind.COMPLAINT: "complaint"}
READER_KINDS = {EventKind.OPEN: TrackingKind.OPEN, EventKind.CLICK: TrackingKind.CLICK}
ATTEMPTS = 3
RETRYABLE = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


@dataclass(frozen=True, slots=True)
class Engaged:
    """A person's open or click of a send, as the provider reported it."""

    tenant_id: str
    send_id: int
    metric: str  # open or click
    at: datetime


@dataclass(frozen=True, slots=True)
class Ingested:
    accepted: int  # stored now
    duplicates: int  # stored before (or twice in this batch)
    suppressed: int  # contacts newly suppressed
    revoked: int  # contacts newly unsubscribed
    # Sends with a new bounce or complaint: their campaigns' rates changed (``delivery.guard``).
    flagged: frozenset[int] = frozenset()
    engagements: tuple[Engaged, ...] = ()  # people's opens and clicks stored now, to engage


# SQLite has one writer at a time and its busy handler polls with growing sleeps, so concurrent
# batches that all wait on the lock are served in no order (the bench saw one wait 6 s while others
# went by). Queuing them here first, per database, serves them in arrival order.
_sqlite_writers: WeakKeyDictionary[Database, asyncio.Lock] = WeakKeyDictionary()


def _writer_turn(db: Database) -> AbstractAsyncContextManager[object]:
    if not db.sqlite:
        return nullcontext()
    return _sqlite_writers.setdefault(db, asyncio.Lock())


def _send_id(event: EspEvent) -> int | None:
    value = event.send_id
    return int(value) if value is not None and value.isdigit() and len(value) < 19 else None


async def ingest(db: Database, events: Sequence[EspEvent], *, soft_bounce_limit: int) -> Ingested:
    """Store and apply one request's events; all or nothing."""
    if not events:
        return Ingested(0, 0, 0, 0)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await _ingest_once(db, events, soft_bounce_limit=soft_bounce_limit)
        except DBAPIError as error:
            # Concurrent batches about the same sends and contacts can deadlock on PostgreSQL
            # (each updates rows the other holds); the loser rolled back whole, so run it again.
            if attempt == ATTEMPTS or getattr(error.orig, "sqlstate", None) not in RETRYABLE:
                raise
    raise AssertionError("unreachable")


async def _ingest_once(
    db: Database, events: Sequence[EspEvent], *, soft_bounce_limit: int
) -> Ingested:
    async with _writer_turn(db), db.write() as conn:
        by_id, by_message = await find_sends(
            conn,
            send_ids={i for e in events if (i := _send_id(e)) is not None},
            message_ids={e.message_id for e in events if e.message_id},
        )

        def send_of(event: EspEvent) -> SendRef | None:
            found = by_id.get(_send_id(event) or 0)
            if found is None and event.message_id:
                found = by_message.get(event.message_id)
            return found

        located = [(event, send_of(event)) for event in events]
        rows = [
            {
                "tenant_id": send.tenant_id if send else None,
                "provider": event.provider,
                "provider_event_id": event.provider_event_id,
                "send_id": send.id if send else None,
                "kind": event.kind.value,
                "reason": event.reason or None,
                "occurred_at": event.occurred_at,
            }
            for event, send in located
        ]
        inserted = await insert_new_events(conn, rows=rows)
        accepted = len(inserted)
        fresh: list[tuple[EspEvent, SendRef]] = []
        for event, send in located:
            key = (event.provider, event.provider_event_id)
            if send is not None and key in inserted:
                inserted.discard(key)  # a repeat within the batch applies once
                fresh.append((event, send))
        suppressed, revoked = await _apply(conn, fresh, soft_bounce_limit=soft_bounce_limit)
        await publish(conn, [esp_event(
            tenant_id=send.tenant_id, send_id=send.id, contact_id=send.contact_id, kind=event.kind,
            provider=event.provider, provider_event_id=event.provider_event_id,
            occurred_at=event.occurred_at) for event, send in fresh])  # fmt: skip  # webhooks
    flagged = frozenset(send.id for event, send in fresh if event.kind in FLAGGING)
    return Ingested(accepted, len(events) - accepted, suppressed, revoked, flagged, _people(fresh))


def _people(fresh: list[tuple[EspEvent, SendRef]]) -> tuple[Engaged, ...]:
    """The earliest open and click per send that a person made, as far as the provider saw."""
    first: dict[tuple[int, str], Engaged] = {}
    for event, send in fresh:
        kind = READER_KINDS.get(event.kind)
        if kind is None:
            continue
        verdict = classify(
            Hit(
                kind=kind,
                method="GET",
                user_agent=event.user_agent,
                ip=event.ip,
                at=event.occurred_at,
                delivered_at=send.delivered_at,
                provider_says_machine=event.machine,
            )
        )
        key = (send.id, event.kind.value)
        if verdict.human and (key not in first or event.occurred_at < first[key].at):
            first[key] = Engaged(send.tenant_id, send.id, event.kind.value, event.occurred_at)
    return tuple(first.values())


async def _apply(
    conn: AsyncConnection, fresh: list[tuple[EspEvent, SendRef]], *, soft_bounce_limit: int
) -> tuple[int, int]:
    """The effects of events stored now; returns (contacts suppressed, contacts revoked)."""
    # An unsubscribe, complaint or hard bounce stops sends: ordered against claims from here
    # (before this transaction touches send rows, as a revocation through the API is).
    await order_against_claims(conn, tenant_ids={
        send.tenant_id for event, send in fresh
        if event.kind in SUPPRESSING or event.kind is EventKind.UNSUBSCRIBE
    })  # fmt: skip
    # Send states: fold each send's new events over its state, then one update per target state.
    states: dict[int, EventKind | None] = {}
    start: dict[int, EventKind | None] = {}
    for event, send in fresh:
        if send.id not in states:
            current = EventKind(send.esp_state) if send.esp_state in RANK else None
            states[send.id] = start[send.id] = current
        states[send.id] = advance(states[send.id], event.kind)
    targets: dict[EventKind, set[int]] = defaultdict(set)
    for send_id, state in states.items():
        if state is not None and state != start[send_id]:
            targets[state].add(send_id)
    for state, send_ids in targets.items():
        below = [kind.value for kind, rank in RANK.items() if rank < RANK[state]]
        await raise_esp_states(conn, state=state.value, send_ids=send_ids, below=below)

    # The rollups count each email's first report of each kind (opens and clicks count through
    # engagement, where machines are told apart from people).
    await count_firsts(
        conn,
        firsts=[(e.kind.value, send.id, e.occurred_at) for e, send in fresh if e.kind in COUNTED],
    )

    # Soft bounces in a row, per contact, in the order they happened.
    runs: dict[int, tuple[bool, int]] = {}
    for event, send in sorted(fresh, key=lambda pair: pair[0].occurred_at):
        reset, added = runs.get(send.contact_id, (False, 0))
        if event.kind is EventKind.DELIVERED:
            runs[send.contact_id] = (True, 0)
        elif event.kind is EventKind.BOUNCE_SOFT:
            runs[send.contact_id] = (reset, added + 1)
    lengths = await count_soft_bounces(conn, changes=runs)

    changes: list[LedgerChange] = []
    tenants: dict[int, tuple[str, str]] = {}
    for event, send in fresh:
        tenants[send.contact_id] = (send.tenant_id, event.provider)
        source = f"esp:{event.provider}"
        if event.kind in SUPPRESSING:
            status, method = ConsentStatus.SUPPRESSED, METHODS[event.kind]
        elif event.kind is EventKind.UNSUBSCRIBE:
            status, method = ConsentStatus.REVOKED, "unsubscribe"
        else:
            continue
        change = LedgerChange(send.tenant_id, send.contact_id, status, source, method, source)
        changes.append(change)
    for contact_id, run in lengths.items():
        if run >= soft_bounce_limit and runs[contact_id][1] > 0:
            tenant_id, provider = tenants[contact_id]
            source = f"esp:{provider}"
            changes.append(
                LedgerChange(
                    tenant_id, contact_id, ConsentStatus.SUPPRESSED, source, "soft-bounces", source
                )
            )
    appended = await append_consent_changes(conn, changes=changes)
    suppressed = sum(1 for c in appended if c.status is ConsentStatus.SUPPRESSED)
    return suppressed, len(appended) - suppressed
