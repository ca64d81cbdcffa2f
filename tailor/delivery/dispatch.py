"""Delivery of composed emails through the tenant's providers, in failover order.

Each provider gets what the one before could not take *for certain*: sends still ``pending``
(never claimed, or released after a definite "not accepted"). A send that reached the
``dispatched`` point with an unclear outcome is never offered to another provider, so failover
cannot double-send.

- SMTP delivers one message per session turn, claiming right before the end-of-data line
  (``tailor/delivery/smtp.py``).
- HTTP providers take batches: the batch is claimed (one commit), then posted once. A definite
  refusal of the whole request (429, 5xx, unreachable) releases the claims for the next
  provider; a short ``Retry-After`` is waited out on the same provider first (back-pressure:
  nothing new is composed or queued meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from tailor.db import Database
from tailor.delivery.claims import ClaimBatcher
from tailor.delivery.mime import MailParts, render_message
from tailor.delivery.providers.base import BatchResult, HttpProvider, OutgoingEmail, Verdict
from tailor.delivery.providers.router import SMTP, ProviderRouter
from tailor.delivery.rate_limit import RateLimiter
from tailor.delivery.smtp import DeliveryUnavailable, Outcome, SmtpDelivery, SmtpSession
from tailor.models import SendStatus, utcnow
from tailor.observability.tracing import note, step
from tailor.store.sends import mark, mark_reconciled, unclear_sends

log = logging.getLogger(__name__)
T = TypeVar("T")

# A provider asking us to wait this long or less is waited for; longer, we fail over.
MAX_PROVIDER_WAIT_S = 10.0
# Attempts of one batch on one provider that throttled it or refused one of its recipients.
MAX_THROTTLED_ATTEMPTS = 3


@dataclass(frozen=True)
class Envelope:
    """One composed email and who it is for (ids for the store, the address for the wire)."""

    send_id: int
    contact_id: int
    email: OutgoingEmail
    sent_at: datetime
    links: list[str] | None = None  # the URLs behind its tracked links, stored with its claim

    @property
    def parts(self) -> MailParts:
        e = self.email
        return MailParts(e.subject, e.text, e.html, e.headers)


@dataclass
class DispatchReport:
    """What became of each envelope; the caller records it on the send rows."""

    accepted: list[tuple[Envelope, str, str]] = field(default_factory=list)  # env, pmid, provider
    refused: list[tuple[Envelope, str, bool]] = field(default_factory=list)  # env, why, suppress
    not_claimed: list[Envelope] = field(default_factory=list)
    ambiguous: list[Envelope] = field(default_factory=list)
    left: list[Envelope] = field(default_factory=list)  # pending: no provider took them
    unavailable: list[str] = field(default_factory=list)  # why providers could not be used
    done: int = 0  # envelopes handled so far (heartbeat progress)


# Called as outcomes accumulate; it may record and clear ``report.accepted``.
Checkpoint = Callable[[DispatchReport], Awaitable[None]]
# Told how many envelopes are handled so far (the activity's heartbeat).
Heartbeat = Callable[[int], None]


class Dispatcher:
    def __init__(
        self,
        db: Database,
        router: ProviderRouter,
        smtp: SmtpDelivery,
        limiter: RateLimiter | None,
        *,
        smtp_connections: int,
        smtp_timeout_s: float,
        default_rate_per_s: float | None,
        reconcile_after_s: float = 600.0,
    ) -> None:
        self._db = db
        self._router = router
        self._smtp = smtp
        self._limiter = limiter
        self._smtp_connections = smtp_connections
        self._timeout_s = smtp_timeout_s
        self._default_rate = default_rate_per_s
        self._reconcile_s = reconcile_after_s
        self._claims: dict[str, ClaimBatcher] = {}

    async def dispatch(
        self,
        *,
        tenant_id: str,
        providers: Sequence[str] | None,
        rate_per_s: float | None,
        envelopes: Sequence[Envelope],
        checkpoint: Checkpoint,
        heartbeat: Heartbeat,
    ) -> DispatchReport:
        report = DispatchReport()

        async def progress(so_far: DispatchReport) -> None:
            heartbeat(so_far.done)
            await checkpoint(so_far)

        remaining = list(envelopes)
        rate = rate_per_s or self._default_rate
        order = self._router.order(providers)
        if not order:
            report.unavailable.append("every provider's circuit breaker is open")
        for name in order:
            if not remaining:
                break
            if name == SMTP:
                remaining = await self._via_smtp(tenant_id, rate, remaining, report, progress)
            elif name in self._router.http:
                remaining = await self._via_http(
                    self._router.http[name], tenant_id, rate, remaining, report, progress
                )
            else:
                report.unavailable.append(f"{name}: not configured in this worker")
        report.left.extend(remaining)
        return report

    # -- HTTP providers ------------------------------------------------------------------------

    async def _via_http(
        self,
        provider: HttpProvider,
        tenant_id: str,
        rate: float | None,
        envelopes: list[Envelope],
        report: DispatchReport,
        checkpoint: Checkpoint,
    ) -> list[Envelope]:
        left: list[Envelope] = []
        queue = list(envelopes)
        first = True  # the router offered this provider: its first batch goes (a trial if open)
        while queue:
            if not first and self._router.is_open(provider.name):
                report.unavailable.append(f"{provider.name}: circuit open")
                left.extend(queue)
                break
            first = False
            batch, queue = queue[: provider.max_batch], queue[provider.max_batch :]
            left.extend(await self._post(provider, tenant_id, rate, batch, report))
            report.done += len(batch)
            await checkpoint(report)
        return left

    async def _post(
        self,
        provider: HttpProvider,
        tenant_id: str,
        rate: float | None,
        batch: list[Envelope],
        report: DispatchReport,
    ) -> list[Envelope]:
        """Claim and post one batch; returns what may go to another provider. The same provider
        gets the batch again when it only asked us to wait briefly (429 + Retry-After), or when
        it turned the request down for a recipient it named (the others were not refused)."""
        for attempt in range(MAX_THROTTLED_ATTEMPTS):
            wait = self._router.wait_s(provider.name)
            if wait > MAX_PROVIDER_WAIT_S:
                report.unavailable.append(f"{provider.name}: asked us to wait {wait:.0f}s")
                return batch
            if wait > 0:
                await asyncio.sleep(wait)
            if rate is not None and self._limiter is not None:
                await self._limiter.acquire(tenant_id, len(batch), rate_per_s=rate)
            with step("claim", provider=provider.name, emails=len(batch)) as span:
                claimed_ids = await self._claim(provider.name, batch)
                note(span, claimed=len(claimed_ids))
            claimed = [e for e in batch if e.send_id in claimed_ids]
            report.not_claimed.extend(e for e in batch if e.send_id not in claimed_ids)
            if not claimed:
                return []
            with step("deliver", provider=provider.name, emails=len(claimed)) as span:
                result = await _shielded(
                    provider.send_batch([e.email for e in claimed]), self._timeout_s
                )
                accepted = sum(r.verdict is Verdict.ACCEPTED for r in result.results)
                note(span, accepted=accepted, provider_failed=result.provider_failed)
            retry = await self._settle(provider.name, claimed, result, report)
            if not retry:
                return []
            again = (
                not result.provider_failed  # a whole-request refusal caused by one recipient
                or result.retry_after_s is not None  # throttled: wait, then the same provider
            )
            if not again or attempt == MAX_THROTTLED_ATTEMPTS - 1:
                return retry
            if self._router.is_open(provider.name):
                return retry
            batch = retry
        return batch

    async def _settle(
        self,
        name: str,
        claimed: list[Envelope],
        result: BatchResult,
        report: DispatchReport,
    ) -> list[Envelope]:
        by_id = {e.send_id: e for e in claimed}
        retry: list[Envelope] = []
        for r in result.results:
            env = by_id.pop(r.send_id, None)
            if env is None:
                continue
            if r.verdict is Verdict.ACCEPTED:
                report.accepted.append((env, r.provider_message_id or "", name))
            elif r.verdict is Verdict.REFUSED:
                report.refused.append((env, r.detail or f"{name}: refused", r.suppress))
            elif r.verdict is Verdict.RETRY:
                retry.append(env)
            else:
                log.warning("send %s: no answer from %s after the request; not resent",
                            env.send_id, name)  # fmt: skip
                report.ambiguous.append(env)
        for env in by_id.values():  # an adapter that forgot one: treat it as unclear
            report.ambiguous.append(env)
        if result.provider_failed:
            detail = next((r.detail for r in result.results if r.detail), "")
            self._router.failed(name, retry_after_s=result.retry_after_s, why=detail)
        else:
            self._router.succeeded(name)
        await self._release([e.send_id for e in retry])
        return retry

    # -- SMTP ----------------------------------------------------------------------------------

    async def _via_smtp(
        self,
        tenant_id: str,
        rate: float | None,
        envelopes: list[Envelope],
        report: DispatchReport,
        checkpoint: Checkpoint,
    ) -> list[Envelope]:
        queue: asyncio.Queue[Envelope] = asyncio.Queue()
        for env in envelopes:
            queue.put_nowait(env)
        left: list[Envelope] = []
        sessions = min(self._smtp_connections, max(len(envelopes), 1))
        # gather, not a TaskGroup: one session failing must not cancel another mid-message.
        results = await asyncio.gather(
            *(
                self._smtp_loop(tenant_id, rate, queue, report, left, checkpoint)
                for _ in range(sessions)
            ),
            return_exceptions=True,
        )
        unavailable = [r for r in results if isinstance(r, DeliveryUnavailable)]
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, DeliveryUnavailable):
                raise result
        if unavailable:
            self._router.failed(SMTP, why=str(unavailable[0]))
            report.unavailable.append(f"smtp: {unavailable[0]}")
        while not queue.empty():
            left.append(queue.get_nowait())
        await self._release([e.send_id for e in left])
        return left

    async def _smtp_loop(
        self,
        tenant_id: str,
        rate: float | None,
        queue: asyncio.Queue[Envelope],
        report: DispatchReport,
        left: list[Envelope],
        checkpoint: Checkpoint,
    ) -> None:
        sent = accepted = 0
        with step("deliver", provider=SMTP) as span:  # one SMTP session, many messages
            try:
                async with self._smtp.session() as session:
                    while not queue.empty():
                        env = queue.get_nowait()
                        if rate is not None and self._limiter is not None:
                            await self._limiter.acquire(tenant_id, 1, rate_per_s=rate)
                        # Shielded: once a message is claimed, its end-of-data must be written
                        # even if the activity is cancelled, or the contact would be marked but
                        # never receive it.
                        try:
                            outcome, detail, pmid = await _shielded(
                                self._smtp_one(session, env), self._timeout_s
                            )
                        except DeliveryUnavailable:
                            queue.put_nowait(env)  # not accepted: another provider may take it
                            raise
                        sent += 1
                        if outcome is Outcome.ACCEPTED:
                            accepted += 1
                            self._router.succeeded(SMTP)
                            report.accepted.append((env, pmid or "", SMTP))
                        elif outcome is Outcome.REFUSED:  # SMTP 5xx: refused for good
                            report.refused.append((env, f"smtp: {detail or 'refused'}", True))
                        elif outcome is Outcome.DEFERRED:
                            left.append(env)
                        elif outcome is Outcome.NOT_CLAIMED:
                            report.not_claimed.append(env)
                        else:
                            log.warning("send %s: %s; not resent", env.send_id, detail)
                            report.ambiguous.append(env)
                        report.done += 1
                        await checkpoint(report)
            finally:
                note(span, emails=sent, accepted=accepted)

    async def _smtp_one(
        self, session: SmtpSession, env: Envelope
    ) -> tuple[Outcome, str | None, str | None]:
        e = env.email
        message = render_message(
            env.parts,
            from_name=e.from_name,
            from_email=e.from_email,
            to_email=e.to_email,
            sent_at=env.sent_at,
        )
        result = await session.send(
            mail_from=e.from_email,
            rcpt_to=e.to_email,
            message=message,
            claim=lambda end_of_data: self._batcher(SMTP).claim(
                env.send_id, end_of_data, env.links
            ),
        )
        return result.outcome, result.detail, result.provider_message_id

    # -- reconciliation ------------------------------------------------------------------------

    async def reconcile(
        self, campaign_id: str, contact_ids: Sequence[int], occurrence: str
    ) -> tuple[int, float]:
        """Settle these contacts' sends that an earlier attempt left ``dispatched`` at an HTTP
        provider (a worker died between the claim and the answer, or no answer came): the ones
        the provider's records show are sent, the rest pending again, to be sent now. Sends
        younger than ``reconcile_after_s`` are left alone (the request may still be in flight,
        or not yet in the provider's records); returns how many, and how long until the first
        of them can be looked up."""
        if not self._router.http:
            return 0, 0.0  # SMTP only: its unclear sends cannot be looked up anywhere
        async with self._db.read() as conn:
            unclear = await unclear_sends(
                conn, campaign_id=campaign_id, contact_ids=contact_ids, occurrence=occurrence,
                providers=list(self._router.http),
            )  # fmt: skip
        now = utcnow()
        due: dict[str, list[int]] = {}
        young: list[float] = []
        for send in unclear:
            at = send.dispatched_at
            age = (now - at).total_seconds() if at else self._reconcile_s
            if age >= self._reconcile_s:
                due.setdefault(send.provider, []).append(send.id)
            else:
                young.append(self._reconcile_s - age)
        for provider, send_ids in due.items():
            found = await self._router.http[provider].delivered(send_ids)
            if found is None:
                continue  # the provider cannot tell: they stay unclear, never resent
            await self._settle_unclear(provider, send_ids, found)
        return len(young), min(young, default=0.0)

    async def _settle_unclear(self, provider: str, send_ids: list[int], found: set[int]) -> None:
        sent = [i for i in send_ids if i in found]
        missing = [i for i in send_ids if i not in found]
        async with self._db.write() as conn:
            await mark_reconciled(conn, send_ids=sent, provider=provider)
            await mark(
                conn, send_ids=missing, status=SendStatus.PENDING, from_status=SendStatus.DISPATCHED
            )
        log.info("reconciled %d unclear sends at %s: %d delivered, %d to send again",
                 len(send_ids), provider, len(sent), len(missing))  # fmt: skip

    # -- claims --------------------------------------------------------------------------------

    def _batcher(self, provider: str) -> ClaimBatcher:
        batcher = self._claims.get(provider)
        if batcher is None:
            batcher = self._claims[provider] = ClaimBatcher(self._db, provider)
        return batcher

    async def _claim(self, provider: str, batch: list[Envelope]) -> set[int]:
        batcher = self._batcher(provider)
        claimed = await asyncio.gather(
            *(batcher.claim(e.send_id, _nothing, e.links) for e in batch)
        )
        return {e.send_id for e, ok in zip(batch, claimed, strict=True) if ok}

    async def _release(self, send_ids: list[int]) -> None:
        """Claimed but certainly not accepted: pending again, for the next provider or retry."""
        if not send_ids:
            return
        async with self._db.write() as conn:
            await mark(
                conn,
                send_ids=send_ids,
                status=SendStatus.PENDING,
                from_status=SendStatus.DISPATCHED,
            )


def _nothing() -> None:
    return None


async def _shielded(work: Awaitable[T], grace_s: float) -> T:
    """Run ``work`` to its end even if we are cancelled meanwhile (up to ``grace_s``): a claimed
    batch's outcome must be recorded, or it could neither be trusted nor resent."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task], timeout=grace_s)
        raise
