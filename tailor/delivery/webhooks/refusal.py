"""Why a webhook request is refused, and the checks every provider shares.

A request that cannot be proved to come from the provider (unsigned, forged, tampered, replayed,
stale, or pointing at a certificate we will not fetch) raises ``WebhookRefused``: the API answers
401 and records nothing. The reason is short, fixed text (never request content) so it is safe to
log.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from tailor.delivery.webhooks.events import from_epoch
from tailor.errors import TailorError

# The issue's window. Providers' clocks and ours agree to well within it; a request older than
# this is a replay or a retry we would rather see again than trust.
MAX_AGE = timedelta(minutes=5)
MAX_SKEW = timedelta(minutes=5)  # how far in the future a timestamp may be


class WebhookRefused(TailorError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def require_header(headers: Mapping[str, str], name: str) -> str:
    """The header's value, whatever case the mapping uses for names; refused when absent."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    if not value:
        raise WebhookRefused(f"missing {name} header")
    return value


def require_fresh_epoch(
    timestamp: object, *, now: datetime | None = None, max_age: timedelta = MAX_AGE
) -> None:
    """A signed Unix-seconds timestamp within the window; WebhookRefused otherwise."""
    try:
        sent_at = from_epoch(timestamp)
    except (ValueError, OverflowError, OSError) as error:
        raise WebhookRefused("bad timestamp") from error
    require_fresh(sent_at, now=now, max_age=max_age)


def require_fresh(
    sent_at: datetime, *, now: datetime | None = None, max_age: timedelta = MAX_AGE
) -> None:
    now = now or datetime.now(UTC)
    if sent_at < now - max_age:
        raise WebhookRefused("timestamp too old")
    if sent_at > now + MAX_SKEW:
        raise WebhookRefused("timestamp in the future")
