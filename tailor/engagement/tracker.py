"""The open pixel's and click redirect's recorder: the routes answer at once and hand each hit
to a small in-process queue, and one background consumer checks its token, classifies it
(person or machine, ``tailor.tracking.machines``), stores it as a ``TrackingHit`` and, for a
person, records the engagement like the API does (``record.engage``).

The queue is bounded: when the database cannot keep up, hits are dropped with a warning
rather than slowing the responses down or growing without limit. A hit is an observation,
not a transaction anyone retries, so losing a few under overload is the right trade.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from tailor.db import Database
from tailor.engagement.record import engage
from tailor.journeys.triggers import TriggerAgent
from tailor.models import Send
from tailor.profiles.cache import FeatureCache
from tailor.store.campaigns import DELIVERED
from tailor.store.tracking import TrackedSend, other_links_clicked, record_hit, tracked_send
from tailor.tracking.links import target_for
from tailor.tracking.machines import BURST_SECONDS, Hit, classify
from tailor.tracking.tokens import TrackingKind, TrackingToken, peek_send_id, verify

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
METRICS = {TrackingKind.OPEN: "open", TrackingKind.CLICK: "click"}


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


class Tracker:
    def __init__(
        self,
        db: Database,
        *,
        secret: str,
        triggers: TriggerAgent,
        features: FeatureCache | None,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._db = db
        self._secret = secret
        self._triggers = triggers
        self._features = features
        self._queue: asyncio.Queue[RawHit] = asyncio.Queue(maxsize=queue_size)
        self._consumer: asyncio.Task[None] | None = None
        self.dropped = 0

    def start(self) -> None:
        if self._consumer is None:
            self._consumer = asyncio.create_task(self._consume(), name="tracking-recorder")

    async def stop(self) -> None:
        """Record what is queued, then stop the consumer."""
        if self._consumer is None:
            return
        await self.drain()
        self._consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._consumer
        self._consumer = None

    async def drain(self) -> None:
        """Wait until every hit queued so far is recorded (or failed to be)."""
        await self._queue.join()

    def offer(self, hit: RawHit) -> None:
        """Queue a hit for recording; never blocks, never raises."""
        try:
            self._queue.put_nowait(hit)
        except asyncio.QueueFull:
            self.dropped += 1
            # No token, address or agent: only that the recorder is behind.
            log.warning("tracking recorder is behind: hit dropped (%d so far)", self.dropped)

    async def resolve(self, token: str, kind: TrackingKind) -> Resolved | None:
        """The verified token of ``kind`` and its send, or None (unknown send, bad signature,
        a key older than the previous one)."""
        send_id = peek_send_id(token)
        if send_id is None:
            return None
        async with self._db.read() as conn:
            send = await tracked_send(conn, send_id=send_id)
        if send is None:
            return None
        verified = verify(self._secret, send.tenant_id, send.key_version, token)
        if verified is None or verified.kind is not kind or verified.send_id != send.send_id:
            return None
        return Resolved(verified, send)

    async def target(self, token: str) -> tuple[str, Resolved] | None:
        """Where a click token redirects to: one of its email's own links, or None."""
        resolved = await self.resolve(token, TrackingKind.CLICK)
        if resolved is None or resolved.token.link_index is None:
            return None
        url = target_for(resolved.send.links, resolved.token.link_index)
        return None if url is None else (url, resolved)

    async def _consume(self) -> None:
        while True:
            hit = await self._queue.get()
            try:
                await self._record(hit)
            except Exception:  # a hit that cannot be recorded must not stop the others
                log.exception("tracking hit not recorded")
            finally:
                self._queue.task_done()

    async def _record(self, raw: RawHit) -> None:
        kind = raw.kind
        resolved = await self.resolve(raw.token, kind)
        if resolved is None:
            return  # a tampered or stale token records nothing
        token, send = resolved.token, resolved.send
        if token.link_index is not None and target_for(send.links, token.link_index) is None:
            return  # the redirect refused it too
        async with self._db.write() as conn:
            burst = 0
            if token.link_index is not None:
                burst = await other_links_clicked(
                    conn,
                    send_id=send.send_id,
                    link_index=token.link_index,
                    since=raw.at - timedelta(seconds=BURST_SECONDS),
                )
            verdict = classify(
                Hit(
                    kind=kind,
                    method=raw.method,
                    user_agent=raw.user_agent,
                    ip=raw.ip,
                    at=raw.at,
                    delivered_at=send.delivered_at,
                    clicks_of_send_in_last_seconds=burst,
                    links_in_email=len(send.links),
                )
            )
            await record_hit(
                conn, tenant_id=send.tenant_id, send_id=send.send_id, kind=METRICS[kind],
                link_index=token.link_index, human=verdict.human, rule=verdict.rule, at=raw.at,
            )  # fmt: skip
        if not verdict.human or send.status not in DELIVERED:
            return
        async with self._db.request_session() as session:
            row = await session.get(Send, send.send_id)
            if row is None:
                return
            await engage(
                session, triggers=self._triggers, features=self._features,
                tenant_id=send.tenant_id, send=row, metric=METRICS[kind], occurred_at=raw.at,
            )  # fmt: skip
