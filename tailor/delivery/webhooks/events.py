"""The one shape every ESP webhook event is turned into, and how an event moves a send's state.

Providers report the same facts under different names (SendGrid ``spamreport``, Mailgun
``complained``, SES ``Complaint``); each provider module maps its own into ``EspEvent`` so storage,
suppression and analytics read one shape.

Events arrive late, twice and out of order (providers retry, batch and deliver from many
machines), so a send's state only ever moves *up* this ranking; a lower or equal event leaves it
as it was (the event itself is still stored and counted):

    rank  state         why it sits here
    1     deferred      the provider is still trying
    2     bounce_soft   a temporary failure: a later ``delivered`` (the retry worked) wins
    3     delivered     the receiving server took it
    4     open          reading implies delivery
    5     click         clicking implies reading
    6     unsubscribe   the reader asked to stop: engagement after it does not undo it
    7     bounce_hard   the address is dead; a late ``delivered`` or ``open`` must not revive it
    8     complaint     the strongest signal there is: the address is never mailed again
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tailor.errors import InvalidInput


class EventKind(StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCE_HARD = "bounce_hard"
    BOUNCE_SOFT = "bounce_soft"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    OPEN = "open"
    CLICK = "click"


RANK: dict[EventKind, int] = {
    EventKind.DEFERRED: 1,
    EventKind.BOUNCE_SOFT: 2,
    EventKind.DELIVERED: 3,
    EventKind.OPEN: 4,
    EventKind.CLICK: 5,
    EventKind.UNSUBSCRIBE: 6,
    EventKind.BOUNCE_HARD: 7,
    EventKind.COMPLAINT: 8,
}
# Kinds that mean "never mail this address again" (the consent ledger's business).
SUPPRESSING = frozenset({EventKind.BOUNCE_HARD, EventKind.COMPLAINT})
REASON_LIMIT = 200  # characters: a short diagnosis, never a whole SMTP transcript


@dataclass(frozen=True, slots=True)
class EspEvent:
    """One thing a provider says happened to one email.

    ``provider_event_id`` is stable across the provider's retries, so storing on it makes each
    event count once. ``message_id`` is the email's Message-ID without angle brackets (the one
    Tailor wrote, when the provider reports it) and ``send_id`` Tailor's send id from the
    provider's custom arguments / variables / tags; either may be missing.
    """

    provider: str
    provider_event_id: str
    kind: EventKind
    recipient: str
    occurred_at: datetime
    message_id: str | None = None
    send_id: str | None = None
    reason: str = ""
    url: str | None = None  # the link of a click
    # Of an open or a click, what the provider saw of who made it (for telling people from
    # machines, ``tailor.tracking.machines``; never stored): the user agent and address, and
    # whether the provider itself says a machine made it (SendGrid's sg_machine_open).
    user_agent: str | None = None
    ip: str | None = None
    machine: bool = False


def advance(current: EventKind | None, event: EventKind) -> EventKind:
    """The send's state after ``event``: the higher ranked of the two (see the module's table)."""
    if current is None or RANK[event] > RANK[current]:
        return event
    return current


def short_reason(*parts: object) -> str:
    """The first non-empty part, on one line and cut to ``REASON_LIMIT`` characters."""
    for part in parts:
        if isinstance(part, str) and part.strip():
            return " ".join(part.split())[:REASON_LIMIT]
    return ""


def bare_message_id(value: object) -> str | None:
    """``<abc@host>`` and ``abc@host`` name the same Message-ID; compare them without brackets."""
    if not isinstance(value, str):
        return None
    bare = value.strip().removeprefix("<").removesuffix(">").strip()
    return bare or None


def required_text(data: dict[str, Any], key: str, field: str) -> str:
    """A non-empty string field of a provider's event; InvalidInput naming ``field`` if not."""
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, "missing")
    return value


def event_time(value: object, field: str) -> datetime:
    """An event's Unix-seconds time; InvalidInput naming ``field`` if it is not one."""
    try:
        return from_epoch(value)
    except (ValueError, OverflowError, OSError) as error:
        raise InvalidInput(field, "not a Unix timestamp") from error


def from_epoch(value: object) -> datetime:
    """An aware UTC time from Unix seconds (int, float or their text); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("not a Unix timestamp")
    seconds = float(value)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError("not a Unix timestamp")
    return datetime.fromtimestamp(seconds, UTC)
