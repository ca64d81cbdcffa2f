"""What the stub accepted: the recorded message (:class:`StubMessage`), per-provider counts, and
the thread-safe :class:`Ledger` that keeps them, sized for runs of a million recipients."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

PROVIDERS = ("sendgrid", "mailgun", "ses")
LOOKUP_PROVIDERS = ("sendgrid", "mailgun")  # SES has no delivery lookup
KEEP_MESSAGES = 2_000


def hashed_address(address_hash: int) -> str:
    """How a lookup names a recipient: the ledger keeps only a hash of the address."""
    return f"{address_hash & 0xFFFF_FFFF_FFFF_FFFF:016x}@hash.invalid"


@dataclass(slots=True)
class StubMessage:
    """One accepted message, as the recipient would get it (substitutions applied)."""

    provider: str
    to: str
    subject: str
    text: str
    html: str
    message_id: str | None
    headers: dict[str, str]
    metadata: dict[str, str]  # SendGrid custom_args, Mailgun v: variables, SES tags
    tags: tuple[str, ...] = ()  # SendGrid categories, Mailgun o:tag
    seq: int = 0  # assigned when recorded; ``GET /_stub/messages?since=`` pages on it

    @property
    def identity(self) -> str | None:
        return self.message_id or self.metadata.get("tailor_send_id")

    @property
    def send_id(self) -> int | None:
        try:
            return int(self.metadata["tailor_send_id"])
        except (KeyError, ValueError):
            return None


@dataclass
class Counts:
    requests: int = 0
    accepted: int = 0  # messages
    refused: int = 0  # recipients refused as invalid or rejected
    bad_requests: int = 0  # whole requests refused (4xx other than auth and 429)
    failed: int = 0  # injected fail_status answers
    rate_limited: int = 0
    unauthorised: int = 0
    dropped: int = 0  # answers never sent (drop_after_read)


Accepted = tuple[int, int]  # (send id, hash of the address): one accepted message


class Ledger:
    """Thread-safe record of accepted messages: bounded bodies, unbounded (but small) counts."""

    def __init__(self, keep: int = KEEP_MESSAGES) -> None:
        self._lock = threading.Lock()
        self._recent: deque[StubMessage] = deque(maxlen=keep)
        # hash() of each identity: a small int a message, not its string (~60 vs ~110 bytes).
        self._seen: set[int] = set()
        # Per provider, send id -> its address's hash(), a tuple of them once accepted again.
        self._sends: dict[str, dict[int, int | tuple[int, ...]]] = {
            name: {} for name in LOOKUP_PROVIDERS
        }
        self._duplicate_ids: deque[str] = deque(maxlen=100)
        self._seq = 0  # never reset, so ``since`` cursors stay valid across resets
        self._total = 0
        self._duplicates = 0
        self.counts = {name: Counts() for name in PROVIDERS}

    def add(self, messages: list[StubMessage]) -> None:
        with self._lock:
            for message in messages:
                self._seq += 1
                self._total += 1
                message.seq = self._seq
                self._recent.append(message)
                self.counts[message.provider].accepted += 1
                sends = self._sends.get(message.provider)
                if sends is not None and (send_id := message.send_id) is not None:
                    address = hash(message.to)
                    known = sends.get(send_id)
                    if known is None:
                        sends[send_id] = address
                    else:  # accepted again: rare, so a tuple only then
                        again = known if isinstance(known, tuple) else (known,)
                        sends[send_id] = (*again, address)
                identity = message.identity
                if identity is None:
                    continue
                key = hash(identity)
                if key in self._seen:
                    self._duplicates += 1
                    self._duplicate_ids.append(identity)
                else:
                    self._seen.add(key)

    def count(self, provider: str, what: str, n: int = 1) -> None:
        with self._lock:
            counts = self.counts[provider]
            setattr(counts, what, getattr(counts, what) + n)

    def accepted(self, provider: str, send_ids: list[int]) -> list[Accepted]:
        """One entry per message of these sends the provider accepted, in the ids' order."""
        with self._lock:
            sends = self._sends[provider]
            found = [(i, sends[i]) for i in send_ids if i in sends]
        return [
            (i, a) for i, known in found for a in (known if isinstance(known, tuple) else (known,))
        ]

    def messages(self, provider: str | None = None, since: int = 0) -> list[StubMessage]:
        with self._lock:
            return [
                m
                for m in self._recent
                if m.seq > since and (provider is None or m.provider == provider)
            ]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "providers": {name: asdict(c) for name, c in self.counts.items()},
                "messages": self._total,
                "unique": len(self._seen),
                "duplicates": self._duplicates,
                "duplicate_ids": list(self._duplicate_ids),
            }

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()
            self._seen.clear()
            for sends in self._sends.values():
                sends.clear()
            self._duplicate_ids.clear()
            self._total = self._duplicates = 0
            self.counts = {name: Counts() for name in PROVIDERS}
