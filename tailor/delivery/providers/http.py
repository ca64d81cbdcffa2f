"""HTTP plumbing shared by the provider adapters: one client each, one error mapping.

What a request's fate means for its recipients (the verdicts of ``base.py``)::

    httpx.TransportError
    ├── never fully written: the provider cannot have taken it ........ RETRY, provider_failed
    │     ConnectError, ConnectTimeout, PoolTimeout, WriteError, WriteTimeout,
    │     LocalProtocolError, UnsupportedProtocol, ProxyError
    └── anything else (written, no answer) ............................ AMBIGUOUS, provider_failed
          ReadTimeout, ReadError, RemoteProtocolError, CloseError, and unknown kinds
    an HTTP answer
    ├── 2xx ............................................................ the adapter reads it
    ├── 408, 429, 5xx .................................................. RETRY, provider_failed,
    │                                                                    retry_after_s if given
    ├── 3xx, 401, 403, 404: our configuration is wrong (key, domain,
    │   region, base URL); the detail names the setting ................ RETRY, provider_failed
    └── other 4xx ...................................................... the adapter attributes it
          to recipients (REFUSED, the others RETRY); what it cannot attribute means our request
          was malformed: REFUSED with suppress=False, so it shows rather than retries forever.

A delivery lookup (``delivered``) reads a provider's records instead, and anything but a 2xx it
can read raises :class:`LookupFailed`: a failed lookup must never pass for "not delivered", which
would send the email again.

Nothing here retries: the dispatcher decides what goes again, and where.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from tailor.delivery.providers.base import BatchResult, OutgoingEmail, RecipientResult, Verdict

# Sized for the few batches a worker posts at once (chunk concurrency), not for fan-out.
MAX_CONNECTIONS = 8
# Shorter than the providers' own idle timeouts, so a pooled connection is rarely reused just
# as the server closes it (that race would look like an ambiguous outcome).
KEEPALIVE_EXPIRY_S = 15.0
MAX_DETAIL = 300

_NOT_WRITTEN = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.LocalProtocolError,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
)
_ADDRESS = re.compile(r"[^\s<>\"',;:()]+@[^\s<>\"',;:()]+")


def _overloaded(status: int) -> bool:
    return status in (408, 429) or status >= 500


def scrub(text: str) -> str:
    """A provider's message fit for the send row: no addresses, one line, bounded."""
    return " ".join(_ADDRESS.sub("<address>", text).split())[:MAX_DETAIL]


def settle_all(
    emails: Sequence[OutgoingEmail],
    verdict: Verdict,
    detail: str,
    *,
    suppress: bool = False,
    provider_failed: bool = False,
    retry_after_s: float | None = None,
) -> BatchResult:
    results = [
        RecipientResult(e.send_id, verdict, detail=detail, suppress=suppress) for e in emails
    ]
    return BatchResult(results, retry_after_s=retry_after_s, provider_failed=provider_failed)


def merge(emails: Sequence[OutgoingEmail], parts: Sequence[BatchResult]) -> BatchResult:
    """One result for a batch that went as several requests, in the batch's order."""
    by_id = {r.send_id: r for part in parts for r in part.results}
    waits = [p.retry_after_s for p in parts if p.retry_after_s is not None]
    return BatchResult(
        [by_id[e.send_id] for e in emails],
        retry_after_s=max(waits) if waits else None,
        provider_failed=any(p.provider_failed for p in parts),
    )


def by_sender(emails: Sequence[OutgoingEmail]) -> list[list[OutgoingEmail]]:
    """Emails that can share one request: same sender, tenant and campaign."""
    groups: dict[tuple[str, str, str, str], list[OutgoingEmail]] = {}
    for e in emails:
        groups.setdefault((e.from_email, e.from_name, e.tenant_id, e.campaign_id), []).append(e)
    return list(groups.values())


def _seconds(value: str, now: float, *, epoch: bool = False) -> float | None:
    try:
        seconds = float(value) - (now if epoch else 0.0)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retry_after_s(response: httpx.Response, now: float | None = None) -> float | None:
    """How long the provider asked us to wait: ``Retry-After`` (seconds or an HTTP date), else
    ``X-RateLimit-Reset`` (epoch seconds) once the limit is spent or on a 429."""
    now = time.time() if now is None else now
    value = response.headers.get("retry-after", "").strip()
    if value:
        if (seconds := _seconds(value, now)) is not None:
            return seconds
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    reset = response.headers.get("x-ratelimit-reset", "").strip()
    spent = response.status_code == 429 or response.headers.get("x-ratelimit-remaining") == "0"
    return _seconds(reset, now, epoch=True) if reset and spent else None


def response_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class LookupFailed(Exception):
    """A delivery lookup got no usable answer (no answer, an HTTP error, a body it cannot read):
    the sends it asked about stay unclear. ``retry_after_s`` is the provider's requested wait."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Unanswered:
    """A request that got no HTTP answer."""

    verdict: Verdict  # RETRY (never fully written) or AMBIGUOUS (written, no answer)
    detail: str

    def result(self, emails: Sequence[OutgoingEmail]) -> BatchResult:
        return settle_all(emails, self.verdict, self.detail, provider_failed=True)


class ProviderClient:
    """One pooled ``httpx.AsyncClient`` for one adapter. httpx retries nothing by itself, so
    every attempt is the dispatcher's and shows in its counts."""

    def __init__(
        self,
        name: str,
        base_url: str,
        timeout_s: float,
        *,
        key_setting: str,
        url_setting: str,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        # Named in details when the provider refuses our credentials or does not know the path.
        self.key_setting = key_setting
        self.url_setting = url_setting
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            auth=auth,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS,
                max_keepalive_connections=MAX_CONNECTIONS,
                keepalive_expiry=KEEPALIVE_EXPIRY_S,
            ),
            transport=transport,
        )

    def build(self, method: str, path: str, **kwargs: Any) -> httpx.Request:
        return self._client.build_request(method, path, **kwargs)

    async def send(self, request: httpx.Request) -> httpx.Response | Unanswered:
        try:
            return await self._client.send(request)  # reads the whole body
        except httpx.TransportError as exc:
            kind = type(exc).__name__
            if isinstance(exc, _NOT_WRITTEN):
                return Unanswered(Verdict.RETRY, f"{self.name}: request not sent ({kind})")
            return Unanswered(Verdict.AMBIGUOUS, f"{self.name}: no answer after sending ({kind})")

    async def ok(self, request: httpx.Request) -> bool:
        """True if the request is answered 2xx (health checks)."""
        answer = await self.send(request)
        return isinstance(answer, httpx.Response) and answer.is_success

    def explain(self, response: httpx.Response) -> str | None:
        """The detail of an answer that says nothing about recipients (rate limits, outages,
        misconfiguration), or None when the adapter has to read it."""
        status = response.status_code
        if _overloaded(status):
            return f"{self.name}: {status} {response.reason_phrase}".strip()
        if status in (401, 403):
            return f"{self.name}: {status}, credentials refused: check {self.key_setting}"
        if status == 404 or 300 <= status < 400:
            path = response.request.url.path
            return f"{self.name}: {status} for {path}: check {self.url_setting}"
        return None

    def failure(
        self, response: httpx.Response, emails: Sequence[OutgoingEmail]
    ) -> BatchResult | None:
        """The outcome of an answer :meth:`explain` explains (all RETRY, provider_failed), or
        None when the adapter has to read it."""
        detail = self.explain(response)
        if detail is None:
            return None
        wait = retry_after_s(response) if _overloaded(response.status_code) else None
        return settle_all(emails, Verdict.RETRY, detail, provider_failed=True, retry_after_s=wait)

    async def lookup(self, request: httpx.Request) -> tuple[httpx.Response, dict[str, Any]]:
        """A delivery lookup's 2xx answer and its JSON object; raises LookupFailed otherwise."""
        answer = await self.send(request)
        if isinstance(answer, Unanswered):
            raise LookupFailed(answer.detail)
        if not answer.is_success:
            status = answer.status_code
            detail = self.explain(answer) or scrub(
                f"{self.name} refused the lookup ({status}): {answer.text}"
            )
            raise LookupFailed(detail, retry_after_s=retry_after_s(answer))
        body = response_json(answer)
        if not isinstance(body, dict):
            raise LookupFailed(f"{self.name}: unreadable lookup answer ({answer.status_code})")
        return answer, body

    def malformed(
        self, response: httpx.Response, emails: Sequence[OutgoingEmail], message: str
    ) -> BatchResult:
        """A 4xx we cannot pin on a recipient: our request is wrong, so resending cannot help."""
        status = response.status_code
        detail = scrub(f"{self.name} refused the request as malformed ({status}): {message}")
        return settle_all(emails, Verdict.REFUSED, detail)

    async def close(self) -> None:
        await self._client.aclose()
