"""The open pixel's and click redirect's recorder: the routes answer at once and hand each hit
to a small in-process queue; a background task checks its token, classifies it (person or
machine, ``tailor.tracking.machines``) and stores it as a ``TrackingHit``, and another records
a person's engagement like the API does (``record.engage``).

Built for the request rate of a large campaign's readers (hundreds of hits a second):

- The consumer takes whatever has queued up, up to ``BATCH`` hits, and stores it in one
  transaction: one read for the sends it does not know yet, one for their recent clicks, one
  insert. The sends a token names (tenant, key version, links) are kept for ``SEND_TTL_S``, so
  the redirect usually finds its target without the database either. The routes share the
  recorder's event loop, so it checks and classifies ``SLICE`` hits at a time and lets them
  answer in between: a batch of 500 never holds up a redirect for its whole length. And it
  starts a batch or an engagement only once the redirects waiting on the database for their
  send have their answer (``GIVE_WAY_S`` at most).
- Only the first open and the first click of an email change anything downstream, so the
  recorder remembers which it has recorded (``ENGAGED_MEMORY``) and asks the database once per
  batch about the others; ``engage`` runs only for a send's first of a kind.
- A security scanner clicks every link of an email within seconds, and its first click looks
  like a person's. So a person's click on an email with two or more links is *held* for
  ``BURST_SECONDS`` before it counts: if the email's other links are clicked inside the window,
  the clicks of the burst (the earlier ones too) are re-flagged machine and none counts. The
  hold never delays the redirect, only the engagement. ``drain(now=True)`` decides held clicks
  at once (tests, and stopping the API).
- Providers' own open and click reports (``tailor.delivery.webhooks``) join the same path
  through ``engage_reported``: stored by the webhook, engaged here, first of a kind only, so a
  pixel open and the provider's report of it count once.

The queue is bounded: when the database cannot keep up, hits are dropped with a warning rather
than slowing the responses down or growing without limit. A hit is an observation, not a
transaction anyone retries, so losing a few under overload is the right trade.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from tailor.db import Database
from tailor.engagement.record import engage
from tailor.journeys.triggers import TriggerAgent
from tailor.models import Send, utcnow
from tailor.profiles.cache import FeatureCache
from tailor.store.campaigns import DELIVERED
from tailor.store.tracking import (
    TrackedSend,
    engaged,
    flag_machine_clicks,
    recent_clicks,
    record_hits,
    still_human,
    tracked_sends,
    tracked_sends_now,
)
from tailor.tracking.links import target_for
from tailor.tracking.machines import BURST_RULE, BURST_SECONDS, Hit, classify
from tailor.tracking.tokens import TrackingKind, TrackingToken, peek_send_id, verify

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
BATCH = 500  # hits stored in one transaction at most
# The recorder checks and classifies this many hits, then lets the routes answer: a batch's CPU
# never holds the event loop for more than a millisecond or two at once.
SLICE = 32
SEND_TTL_S = 60.0  # how long a send's tenant, key version and links are trusted from memory
SEND_MEMORY = 50_000
ENGAGED_MEMORY = 200_000  # (send, metric) pairs known to be recorded already
# After each engagement the recorder rests this many times as long as it took, so that a
# backlog of first opens never takes more than half the process from the routes.
ENGAGE_REST = 1.0
# Before a batch or an engagement (milliseconds of CPU that nothing interrupts), the recorder
# waits up to this long for the redirects waiting on a read of their send to have it.
GIVE_WAY_S = 0.02
METRICS = {TrackingKind.OPEN: "open", TrackingKind.CLICK: "click"}
BURST = timedelta(seconds=BURST_SECONDS)


@dataclass(frozen=True)
class RawHit:
    """A request to the pixel or the redirect as it arrived, its token not yet trusted."""

    kind: TrackingKind  # which route it came to
    token: str
    method: str
    user_agent: str
    ip: str | None
    at: datetime


@dataclass(frozen=True)
class Resolved:
    """A token that verified, and the send it names."""

    token: TrackingToken
    send: TrackedSend


@dataclass(frozen=True)
class Reported:
    """A person's open or click of a send, as someone other than the pixel saw it (a provider's
    event webhook): to be engaged if it is the send's first of its kind."""

    tenant_id: str
    send_id: int
    metric: str  # open or click
    at: datetime


@dataclass(order=True)
class _Held:
    """A person's click waiting out the burst window before it counts."""

    due: datetime
    hit_id: int
    engagement: Reported = field(compare=False)


class _Memory:
    """A bounded map that forgets its oldest entries first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: dict[Any, Any] = {}

    def get(self, key: Any) -> Any:
        return self._items.get(key)

    def put(self, key: Any, value: Any = True) -> None:
        self._items.pop(key, None)
        self._items[key] = value
        if len(self._items) > self._size:
            del self._items[next(iter(self._items))]

    def __contains__(self, key: object) -> bool:
        return key in self._items


class Tracking(Protocol):
    """What the pixel, the redirect and the webhooks need of a recorder: this module's
    ``Tracker`` on the app's own event loop, or the served API's ``api.recorder`` that records
    in a process of its own."""

    def offer(self, hit: RawHit) -> None: ...

    def engage_reported(self, reported: Iterable[Reported]) -> None: ...

    async def target(self, token: str) -> tuple[str, Resolved] | None: ...

    async def drain(self, *, now: bool = False) -> None: ...


class Tracker:
    def __init__(
        self,
        db: Database,
        *,
        secret: str,
        triggers: TriggerAgent,
        features: FeatureCache | None,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._secret = secret
        self._triggers = triggers
        self._features = features
        self._clock = clock
        self._queue: asyncio.Queue[RawHit] = asyncio.Queue(maxsize=queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._sends = _Memory(SEND_MEMORY)  # send id -> (expires, TrackedSend)
        self._engaged = _Memory(ENGAGED_MEMORY)  # (send id, metric)
        self._held: list[_Held] = []  # a heap, by due time
        self._ready: list[Reported] = []  # to engage, in order
        self._seen_up_to: datetime | None = None  # every hit before this is stored
        self._pending: dict[int, asyncio.Future[TrackedSend | None]] = {}  # sends to read
        self._loader: asyncio.Task[None] | None = None
        self._deciding = asyncio.Lock()
        self._wake = asyncio.Event()
        self.dropped = 0  # hits not recorded: the queue was full
        self.not_engaged = 0  # first opens or clicks not engaged: too many waiting

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._consume(), name="tracking-recorder"),
                asyncio.create_task(self._engage_loop(), name="tracking-engagement"),
            ]

    async def stop(self) -> None:
        """Record what is queued (held clicks decided on what has been seen), then stop."""
        if not self._tasks:
            return
        await self.drain(now=True)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def stored(self) -> None:
        """Wait until every hit queued so far is stored (a held click's engagement may still
        be waiting for its window)."""
        await self._queue.join()

    async def drain(self, *, now: bool = False) -> None:
        """Wait until every hit queued so far is stored and its engagement recorded. A held
        click is decided when its burst window has passed, or at once with ``now``."""
        while True:
            await self._queue.join()
            async with self._deciding:  # and what is being engaged right now is done
                if now:
                    await self._decide_now(force=True)
                if self._queue.empty() and not self._held and not self._ready:
                    return
            self._wake.set()
            await asyncio.sleep(0.02)

    def offer(self, hit: RawHit) -> None:
        """Queue a hit for recording; never blocks, never raises."""
        try:
            self._queue.put_nowait(hit)
        except asyncio.QueueFull:
            self.dropped += 1
            # No token, address or agent: only that the recorder is behind.
            log.warning("tracking recorder is behind: hit dropped (%d so far)", self.dropped)

    def engage_reported(self, reported: Iterable[Reported]) -> None:
        """Engage these (stored elsewhere) once each, unless the send has its first of the kind
        already; in the background, like the pixel's."""
        fresh = [r for r in reported if (r.send_id, r.metric) not in self._engaged]
        if fresh:
            self._make_ready(fresh)
            self._wake.set()

    def _make_ready(self, engagements: Iterable[Reported]) -> None:
        for r in engagements:
            if len(self._ready) >= QUEUE_SIZE:
                self.not_engaged += 1
                log.warning("tracking recorder is behind: engagement dropped (%d so far)",
                            self.not_engaged)  # fmt: skip
                continue
            self._ready.append(r)

    # -- tokens and sends ----------------------------------------------------------------------

    async def resolve(self, token: str, kind: TrackingKind) -> Resolved | None:
        """The verified token of ``kind`` and its send, or None (unknown send, bad signature,
        a key older than the previous one)."""
        send_id = peek_send_id(token)
        if send_id is None:
            return None
        send = self._remembered(send_id)
        if send is not None:
            resolved = self._verified(token, kind, send)
            if resolved is not None:
                return resolved
            # The tenant's key may have rotated since: ask the database before refusing.
        send = await self._lookup(send_id)
        return None if send is None else self._verified(token, kind, send)

    async def target(self, token: str) -> tuple[str, Resolved] | None:
        """Where a click token redirects to: one of its email's own links, or None."""
        resolved = await self.resolve(token, TrackingKind.CLICK)
        if resolved is None or resolved.token.link_index is None:
            return None
        url = target_for(resolved.send.links, resolved.token.link_index)
        return None if url is None else (url, resolved)

    def _remembered(self, send_id: int) -> TrackedSend | None:
        entry = self._sends.get(send_id)
        if entry is None or entry[0] < time.monotonic():
            return None
        send: TrackedSend = entry[1]
        return send

    async def _lookup(self, send_id: int) -> TrackedSend | None:
        """One send from the database, read together with the others missed meanwhile (under
        load, one read serves many redirects)."""
        future = self._pending.get(send_id)
        if future is None:
            future = self._pending[send_id] = asyncio.get_running_loop().create_future()
            if self._loader is None or self._loader.done():
                self._loader = asyncio.create_task(self._load_pending())
        return await asyncio.shield(future)

    async def _give_way(self) -> None:
        """Wait (``GIVE_WAY_S`` at most) for the sends redirects are waiting on to be read."""
        loader = self._loader
        if loader is not None and not loader.done():
            await asyncio.wait({loader}, timeout=GIVE_WAY_S)

    async def _load_pending(self) -> None:
        await asyncio.sleep(0)  # the misses of this moment join the first
        while self._pending:
            pending, self._pending = self._pending, {}
            try:
                found = await self._load(list(pending))
            except Exception as exc:
                for future in pending.values():
                    future.set_exception(exc)
                continue
            for send_id, future in pending.items():
                future.set_result(found.get(send_id))

    async def _load(self, send_ids: Sequence[int]) -> dict[int, TrackedSend]:
        if self._db.sqlite:
            found = await self._db.sqlite_read_in_thread(
                lambda conn: tracked_sends_now(conn, send_ids=send_ids)
            )
        else:
            async with self._db.autocommit_read() as conn:
                found = await tracked_sends(conn, send_ids=send_ids)
        expires = time.monotonic() + SEND_TTL_S
        for send in found.values():
            # Not before its links are stored: a send is claimed (and its links written) an
            # instant before its email can reach anyone.
            if send.status in DELIVERED:
                self._sends.put(send.send_id, (expires, send))
        return found

    def _verified(self, token: str, kind: TrackingKind, send: TrackedSend) -> Resolved | None:
        verified = verify(self._secret, send.tenant_id, send.key_version, token)
        if verified is None or verified.kind is not kind or verified.send_id != send.send_id:
            return None
        return Resolved(verified, send)

    # -- the consumer ----------------------------------------------------------------------------

    async def _consume(self) -> None:
        """Store hits as they come, a batch at a time."""
        while True:
            first = await self._queue.get()
            await self._give_way()
            batch = [first, *self._more(BATCH - 1)]
            try:
                await self._store(batch)
            except Exception:  # a batch that cannot be stored must not stop the others
                log.exception("tracking hits not recorded")
            finally:
                for _ in batch:
                    self._queue.task_done()
            self._wake.set()

    async def _engage_loop(self) -> None:
        """Engage the people's first opens and clicks, and decide held clicks when due."""
        while True:
            timeout = None
            if self._held:
                timeout = max((self._held[0].due - self._clock()).total_seconds(), 0.0)
            self._wake.clear()
            if not self._ready:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            await self._decide(force=False)

    def _more(self, limit: int) -> list[RawHit]:
        taken: list[RawHit] = []
        while len(taken) < limit and not self._queue.empty():
            taken.append(self._queue.get_nowait())
        return taken

    async def _store(self, batch: list[RawHit]) -> None:
        """Check, classify and store a batch of hits in one transaction; queue the engagement of
        the people among them (a click on an email with links to spare: held)."""
        resolved = await self._resolve_all(batch)
        valid = [(raw, r) for raw, r in zip(batch, resolved, strict=True) if r is not None]
        self._seen_up_to = max([raw.at for raw in batch] + [self._seen_up_to or batch[0].at])
        if not valid:
            return
        bursty = {r.send.send_id for raw, r in valid if _burst_possible(raw, r)}
        verdicts: list[list[Any]] = []  # [human, rule] per valid hit, changed by later bursts
        flags: list[tuple[int, datetime, datetime]] = []  # earlier stored clicks to re-flag
        async with self._db.write() as conn:
            since = min(raw.at for raw, _ in valid) - BURST
            stored = await recent_clicks(conn, send_ids=bursty, since=since)
            clicks: dict[int, list[tuple[datetime, int, int | None]]] = defaultdict(list)
            for click in stored:  # (at, link, index into this batch or None)
                clicks[click.send_id].append((click.at, click.link_index, None))
            for position, (raw, r) in enumerate(valid):
                if position and position % SLICE == 0:
                    await asyncio.sleep(0)
                send, token = r.send, r.token
                window: list[tuple[datetime, int, int | None]] = []
                if send.send_id in bursty and token.link_index is not None:
                    window = [c for c in clicks[send.send_id] if raw.at - BURST <= c[0] <= raw.at]
                others = {link for _, link, _ in window if link != token.link_index}
                verdict = classify(
                    Hit(
                        kind=raw.kind,
                        method=raw.method,
                        user_agent=raw.user_agent,
                        ip=raw.ip,
                        at=raw.at,
                        delivered_at=send.delivered_at,
                        clicks_of_send_in_last_seconds=len(others),
                        links_in_email=len(send.links),
                    )
                )
                verdicts.append([verdict.human, verdict.rule])
                if verdict.rule == BURST_RULE:
                    # The whole burst was a machine: this batch's earlier clicks now, the
                    # stored ones by an update.
                    for _, _, earlier in window:
                        if earlier is not None and verdicts[earlier][0]:
                            verdicts[earlier] = [False, BURST_RULE]
                    if any(earlier is None for _, _, earlier in window):
                        flags.append((send.send_id, raw.at - BURST, raw.at))
                if token.link_index is not None and send.send_id in bursty:
                    clicks[send.send_id].append((raw.at, token.link_index, position))
            ids = await record_hits(
                conn,
                hits=[
                    {"tenant_id": r.send.tenant_id, "send_id": r.send.send_id,
                     "kind": METRICS[raw.kind], "link_index": r.token.link_index,
                     "human": human, "rule": rule, "at": raw.at}
                    for (raw, r), (human, rule) in zip(valid, verdicts, strict=True)
                ],
            )  # fmt: skip
            for send_id, start, end in flags:
                await flag_machine_clicks(
                    conn, send_id=send_id, since=start, until=end, rule=BURST_RULE
                )
        for hit_id, (raw, r), (human, _) in zip(ids, valid, verdicts, strict=True):
            metric = METRICS[raw.kind]
            if not human or r.send.status not in DELIVERED:
                continue
            if (r.send.send_id, metric) in self._engaged:
                continue
            reported = Reported(r.send.tenant_id, r.send.send_id, metric, raw.at)
            if r.send.send_id in bursty:
                heapq.heappush(self._held, _Held(raw.at + BURST, hit_id, reported))
            else:
                self._make_ready([reported])

    async def _resolve_all(self, batch: list[RawHit]) -> list[Resolved | None]:
        """Each hit's verified token and send, or None (``resolve``, with one read for the sends
        not in memory)."""
        ids = {raw: peek_send_id(raw.token) for raw in batch}
        missing = {i for i in ids.values() if i is not None and self._remembered(i) is None}
        found = await self._load(sorted(missing)) if missing else {}
        out: list[Resolved | None] = []
        for position, raw in enumerate(batch):
            if position and position % SLICE == 0:
                await asyncio.sleep(0)
            send_id = ids[raw]
            send = None if send_id is None else (found.get(send_id) or self._remembered(send_id))
            resolved = None if send is None else self._verified(raw.token, raw.kind, send)
            if resolved is None and send is not None and send_id not in found:
                resolved = await self.resolve(raw.token, raw.kind)  # a key rotated meanwhile
            if resolved is not None and resolved.token.link_index is not None:
                if target_for(resolved.send.links, resolved.token.link_index) is None:
                    resolved = None  # the redirect refused it too
            out.append(resolved)
        return out

    async def _decide(self, *, force: bool) -> None:
        """Engage what is ready, and the held clicks whose window has passed (all, ``force``)
        that are still a person's."""
        async with self._deciding:
            await self._decide_now(force=force)

    async def _decide_now(self, *, force: bool) -> None:
        """``_decide``, the lock held."""
        due = self._due(force)
        try:
            if due:
                async with self._db.read() as conn:
                    human = await still_human(conn, hit_ids=[h.hit_id for h in due])
                self._make_ready(h.engagement for h in due if h.hit_id in human)
            if self._ready:
                ready, self._ready = self._ready, []
                await self._engage(ready)
        except Exception:  # the database is gone: these are lost, later ones are not
            log.exception("tracked engagement not recorded")

    def _due(self, force: bool) -> list[_Held]:
        """Held clicks whose burst window every hit of has been seen: a later hit is stored, or
        nothing is queued and the window is over by the clock."""
        if not self._held:
            return []
        horizon = self._seen_up_to
        if self._queue.empty():
            horizon = max(horizon or self._clock(), self._clock())
        due: list[_Held] = []
        while self._held and (force or (horizon is not None and self._held[0].due <= horizon)):
            due.append(heapq.heappop(self._held))
        return due

    async def _engage(self, ready: list[Reported]) -> None:
        """``engage`` each send's first open or click that the database does not have yet."""
        first: dict[tuple[int, str], Reported] = {}
        for r in ready:
            key = (r.send_id, r.metric)
            if key not in self._engaged and (key not in first or r.at < first[key].at):
                first[key] = r
        if not first:
            return
        async with self._db.read() as conn:
            known = await engaged(
                conn, send_ids={s for s, _ in first}, metrics={m for _, m in first}
            )
        for key in known:
            self._engaged.put(key)
        for key, r in first.items():
            if key in known:
                continue
            await self._give_way()
            started = time.monotonic()
            try:
                async with self._db.request_session() as session:
                    row = await session.get(Send, r.send_id)
                    if row is None:
                        continue
                    await engage(
                        session, triggers=self._triggers, features=self._features,
                        tenant_id=r.tenant_id, send=row, metric=r.metric, occurred_at=r.at,
                    )  # fmt: skip
            except Exception:  # one that cannot be recorded must not stop the others
                log.exception("tracked engagement not recorded")
                continue
            finally:
                # Rest as long as it took (times the share): the pixel and the redirect
                # answer from this process too, and must not queue behind a backlog.
                await asyncio.sleep((time.monotonic() - started) * ENGAGE_REST)
            self._engaged.put(key)


def _burst_possible(raw: RawHit, resolved: Resolved) -> bool:
    """A click on an email with other links: a scanner's burst could include it."""
    return raw.kind is TrackingKind.CLICK and len(resolved.send.links) >= 2
