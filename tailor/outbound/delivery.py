"""Posting an endpoint's queued events: the service behind the webhook workflow's activities.

One batch is one signed POST of up to ``batch_size`` events, oldest first. What an attempt's
fate means::

    a 2xx answer .............................. delivered: the rows settle, the run of failures ends
    anything else (any other status, a
    redirect, a timeout, no connection) ....... ReceiverFailed: counted on the rows and shown on
                                                the endpoint; Temporal retries the batch with
                                                backoff (Retry-After honoured, up to an hour)
    a private address, a write key that no
    longer unseals ............................ ReceiverFailed(permanent): no retry can fix it

When the retry budget is spent the workflow calls ``dead_letter``: the batch's rows become dead
letters (listed and replayed through the API). After ``disable_after`` dead-lettered batches in a
row the endpoint is disabled and its queue joins the dead letters, so a receiver that is gone for
good does not grow the outbox forever.

Delivery is at least once: a receiver that took a batch but whose answer was lost gets it again.
Each event keeps its id through retries and replays, and receivers deduplicate on it.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx

from tailor import __version__
from tailor.db import Database
from tailor.models import EndpointFormat, EndpointStatus, WebhookEndpoint, utcnow
from tailor.outbound.events import TEST
from tailor.outbound.formats import segment_body, tailor_body
from tailor.outbound.signing import HEADER, SealBroken, endpoint_secret, signature_header, unseal
from tailor.outbound.urls import PrivateAddress, Resolver, guarded_client, resolve
from tailor.payloads import OutboundBatch, OutboundDeadLettered, OutboundFailure
from tailor.store import outbound as store
from tailor.store.outbound import QueuedEvent

USER_AGENT = f"Tailor-Webhooks/{__version__}"
MAX_RETRY_AFTER_S = 3600.0


class ReceiverFailed(Exception):
    """An attempt the endpoint did not accept. The message is fixed text and a status code:
    it lands in the workflow history and the API, so never anything the receiver sent."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        permanent: bool = False,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.permanent = permanent


@dataclass(frozen=True)
class ProbeResult:
    """What a test delivery got back."""

    delivered: bool
    status_code: int | None
    error: str | None
    duration_ms: float


def signing_secrets(server_secret: str, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets a delivery is signed with: the current one, and the previous one while its
    grace period after a rotation lasts."""
    current = [endpoint_secret(server_secret, endpoint.id, endpoint.secret_version)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.secret_version > 1 and expires is not None and now < expires:
        current.append(endpoint_secret(server_secret, endpoint.id, endpoint.secret_version - 1))
    return current


def _retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 1.0), MAX_RETRY_AFTER_S) if seconds == seconds else None


class Poster:
    """Signs and posts a batch of events to an endpoint, over one guarded connection pool."""

    def __init__(
        self,
        *,
        server_secret: str,
        allow_private: bool,
        timeout_s: float,
        resolver: Resolver = resolve,
    ) -> None:
        self._server_secret = server_secret
        self._allow_private = allow_private
        self._timeout_s = timeout_s
        self._resolver = resolver
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        # Made on first use, inside the running event loop; one pool for every endpoint.
        if self._client is None:
            self._client = guarded_client(
                allow_private=self._allow_private, timeout_s=self._timeout_s,
                resolver=self._resolver,
            )  # fmt: skip
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def probe(self, endpoint: WebhookEndpoint) -> ProbeResult:
        """Post one ``webhook.test`` event now, signed like any delivery; not stored, not
        retried: it tells whether the endpoint is reachable and checks signatures."""
        now = utcnow()
        event = QueuedEvent(0, f"evt_test_{secrets.token_hex(14)}", TEST, now,
                            data={"message": "a test event from Tailor"})  # fmt: skip
        started = time.perf_counter()
        try:
            status = await self.post(endpoint, [event], attempt=1)
        except ReceiverFailed as failure:
            took = (time.perf_counter() - started) * 1000
            return ProbeResult(False, failure.status_code, str(failure), round(took, 1))
        took = (time.perf_counter() - started) * 1000
        return ProbeResult(True, status, None, round(took, 1))

    def _request(
        self, endpoint: WebhookEndpoint, events: list[QueuedEvent], now: datetime, attempt: int
    ) -> tuple[bytes, dict[str, str]]:
        if endpoint.format == EndpointFormat.SEGMENT:
            body = segment_body(events, sent_at=now)
        else:
            body = tailor_body(endpoint.id, events)
        secrets_now = signing_secrets(self._server_secret, endpoint, now)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            HEADER: signature_header(secrets_now, int(now.timestamp()), body),
            "Tailor-Endpoint-Id": endpoint.id,
            "Tailor-Delivery-Attempt": str(attempt),
        }
        if endpoint.format == EndpointFormat.SEGMENT and endpoint.write_key_sealed:
            try:
                key = unseal(self._server_secret, endpoint.write_key_sealed, endpoint.id)
            except SealBroken as error:
                raise ReceiverFailed(
                    "the Segment write key cannot be read (TAILOR_OUTBOUND_SECRET changed); "
                    "set segment_write_key again",
                    permanent=True,
                ) from error
            # Segment's (and RudderStack's) HTTP API: the write key as the Basic username.
            headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        return body, headers

    async def post(
        self, endpoint: WebhookEndpoint, events: list[QueuedEvent], *, attempt: int
    ) -> int:
        """The endpoint's 2xx status; ReceiverFailed for anything else."""
        now = utcnow()
        body, headers = self._request(endpoint, events, now, attempt)
        try:
            async with self._http().stream(
                "POST", endpoint.url, content=body, headers=headers
            ) as response:  # the body is never read: only the status matters
                status = response.status_code
                retry_after = response.headers.get("retry-after")
        except PrivateAddress as error:
            raise ReceiverFailed(
                "the endpoint's host resolves to a private address", permanent=True
            ) from error
        except httpx.TimeoutException as error:
            raise ReceiverFailed(f"no answer within {self._timeout_s:g} s") from error
        except httpx.HTTPError as error:
            raise ReceiverFailed(f"could not connect ({type(error).__name__})") from error
        if 200 <= status < 300:
            return status
        if 300 <= status < 400:
            raise ReceiverFailed(f"HTTP {status}: redirects are not followed", status_code=status)
        raise ReceiverFailed(
            f"HTTP {status} from the endpoint", status_code=status,
            retry_after_s=_retry_after(retry_after, now),
        )  # fmt: skip


class Deliveries:
    def __init__(self, db: Database, poster: Poster, *, disable_after: int) -> None:
        self._db = db
        self._poster = poster
        self._disable_after = disable_after

    async def close(self) -> None:
        await self._poster.close()

    async def next_batch(self, endpoint_id: str) -> OutboundBatch:
        async with self._db.read() as conn:
            endpoint = await store.endpoint_for_delivery(conn, endpoint_id=endpoint_id)
            if endpoint is None or endpoint.status == EndpointStatus.DELETED:
                return OutboundBatch(endpoint_id, [], stop=EndpointStatus.DELETED.value)
            if endpoint.status != EndpointStatus.ACTIVE:
                return OutboundBatch(endpoint_id, [], stop=EndpointStatus.DISABLED.value)
            ids = await store.pending_ids(conn, endpoint_id=endpoint_id, limit=endpoint.batch_size)
        return OutboundBatch(endpoint_id, ids)

    async def deliver(self, batch: OutboundBatch, *, attempt: int) -> int:
        """Post the batch's rows that are still pending; returns how many were delivered (0
        when none are left, or the endpoint was switched off meanwhile). Raises
        ReceiverFailed when the endpoint does not take it."""
        async with self._db.read() as conn:
            endpoint = await store.endpoint_for_delivery(conn, endpoint_id=batch.endpoint_id)
            if endpoint is None or endpoint.status != EndpointStatus.ACTIVE:
                return 0
            events = await store.load_batch(
                conn, endpoint_id=batch.endpoint_id, delivery_ids=batch.delivery_ids
            )
        if not events:
            return 0
        ids = [event.delivery_id for event in events]
        try:
            await self._poster.post(endpoint, events, attempt=attempt)
        except ReceiverFailed as failure:
            async with self._db.write() as conn:
                await store.record_failure(
                    conn, endpoint_id=endpoint.id, delivery_ids=ids, error=str(failure),
                    now=utcnow(),
                )  # fmt: skip
            raise
        async with self._db.write() as conn:
            return await store.mark_delivered(
                conn, endpoint_id=endpoint.id, delivery_ids=ids, now=utcnow()
            )

    async def dead_letter(self, failure: OutboundFailure) -> OutboundDeadLettered:
        now = utcnow()
        async with self._db.write() as conn:
            count, run = await store.dead_letter(
                conn, endpoint_id=failure.endpoint_id, delivery_ids=failure.delivery_ids,
                error=failure.reason, now=now,
            )  # fmt: skip
            if run < self._disable_after:
                return OutboundDeadLettered(count, disabled=False)
            reason = f"disabled after {run} failed batches in a row (last: {failure.reason})"
            count += await store.disable(conn, endpoint_id=failure.endpoint_id, reason=reason,
                                         now=now)  # fmt: skip
        return OutboundDeadLettered(count, disabled=True)
