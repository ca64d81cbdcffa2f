"""Fault injection: the per-provider :class:`Behaviour` (fail, slow down, rate-limit, hang up,
reject addresses) and the token bucket behind its rate limit."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, fields
from typing import Any

# Syntax only, about as strict as the providers' own checks.
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def valid_address(address: object) -> bool:
    return isinstance(address, str) and _ADDRESS.match(address) is not None


@dataclass
class Behaviour:
    """How one provider behaves; change the fields at any time (they are read per request)."""

    fail_status: int | None = None  # answer every request with this status (503, 500, 429...)
    fail_until: float | None = None  # time.monotonic() when failing stops; None: until cleared
    fail_retry_after_s: int | None = None  # a Retry-After header on those failures
    latency_s: float = 0.0  # before answering
    rate_limit_per_s: float | None = None  # requests/s (token bucket); beyond it: 429 Retry-After
    # Process the request (its messages count as accepted: the worst case for a resend), then
    # close the connection without answering.
    drop_after_read: bool = False
    reject_addresses: set[str] = field(default_factory=set)  # lower-case; refused as invalid

    def failing_status(self) -> int | None:
        if self.fail_status is None:
            return None
        if self.fail_until is not None and time.monotonic() >= self.fail_until:
            return None
        return self.fail_status

    def rejects(self, address: object) -> bool:
        return not valid_address(address) or str(address).lower() in self.reject_addresses

    def update(self, values: dict[str, Any]) -> None:
        """Apply ``POST /_stub/behaviour`` fields; ``fail_for_s`` sets ``fail_until`` from now
        (monotonic clocks differ between processes)."""
        values = dict(values)
        if "fail_for_s" in values:
            seconds = values.pop("fail_for_s")
            values["fail_until"] = None if seconds is None else time.monotonic() + float(seconds)
        if "reject_addresses" in values:
            values["reject_addresses"] = {a.lower() for a in values["reject_addresses"]}
        known = {f.name for f in fields(self)}
        if unknown := set(values) - known:
            raise ValueError(f"unknown behaviour fields: {sorted(unknown)}")
        for name, value in values.items():
            setattr(self, name, value)


@dataclass
class _Bucket:
    tokens: float | None = None
    stamp: float = 0.0

    def wait_s(self, rate: float, now: float) -> float:
        """Take a token: 0 when there was one, else the seconds until there will be."""
        capacity = max(1.0, rate)
        held = capacity if self.tokens is None else self.tokens
        self.tokens = min(capacity, held + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate
