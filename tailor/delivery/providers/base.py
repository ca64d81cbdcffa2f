"""What every HTTP email provider adapter takes and answers.

The dispatcher (``dispatch.py``) claims a batch of sends (committed ``dispatched``), then hands the
batch to an adapter, so an adapter's answer decides each send's fate:

- ``ACCEPTED``: the provider took it (2xx).
- ``REFUSED``: a permanent refusal for this recipient (4xx other than 429 naming it, or an
  invalid/suppressed address); ``suppress`` says the address must not be mailed again.
- ``RETRY``: the provider certainly did not take it (429, 5xx, a connection refused or a request
  never fully written, or a whole-request 4xx caused by *another* recipient): it may go again,
  to this provider or another one.
- ``AMBIGUOUS``: the request was written and no answer came (read timeout, connection reset after
  the write). It may have been accepted, so it is never resent anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    RETRY = "retry"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class OutgoingEmail:
    """One personalised email, ready for any provider. ``headers`` holds Message-ID,
    List-Unsubscribe, List-Unsubscribe-Post and X-Tailor-Campaign. No field other than
    ``to_email``/``subject``/``text``/``html`` may carry personal data: ids only in metadata."""

    send_id: int
    tenant_id: str
    campaign_id: str
    to_email: str
    from_email: str
    from_name: str
    subject: str
    text: str
    html: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecipientResult:
    send_id: int
    verdict: Verdict
    provider_message_id: str | None = None
    detail: str | None = None  # for the send row's error column: no PII
    suppress: bool = False  # a permanent refusal of the address itself (bounce, invalid)


@dataclass(frozen=True)
class BatchResult:
    results: list[RecipientResult]
    # Seconds the provider asked us to wait (Retry-After, X-RateLimit-Reset) before the next
    # request; None when it said nothing.
    retry_after_s: float | None = None
    # The provider itself failed (429/5xx/unreachable/timeout): counts toward its circuit breaker.
    provider_failed: bool = False

    def of(self, verdict: Verdict) -> list[RecipientResult]:
        return [r for r in self.results if r.verdict is verdict]


class HttpProvider(Protocol):
    """An HTTP email provider. One instance per worker; safe to use from many tasks."""

    name: str  # "sendgrid", "mailgun", "ses"
    max_batch: int  # recipients per request: 1,000 (SendGrid, Mailgun), 50 (SES bulk)

    async def send_batch(self, emails: Sequence[OutgoingEmail]) -> BatchResult:
        """Deliver these emails in as few requests as the provider allows (at most
        ``max_batch`` are passed). Must return exactly one result per email and never raise
        for provider or network errors (map them to verdicts)."""
        ...

    async def delivered(self, send_ids: Sequence[int]) -> set[int] | None:
        """Which of these sends the provider has a record of accepting (by the
        ``tailor_send_id`` each message carries), from its activity/events API; None when the
        provider cannot tell (then an unclear send stays unclear). Raises on provider errors:
        a lookup that failed must not be read as "not delivered"."""
        ...

    async def health(self) -> bool:
        """A cheap authenticated call (account/scopes/domain lookup): True if it answers 2xx."""
        ...

    async def close(self) -> None: ...
