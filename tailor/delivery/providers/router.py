"""Which email provider takes the next batch: per-tenant failover order and circuit breakers.

A provider's breaker opens after ``failure_threshold`` consecutive failed requests (5xx, 429,
unreachable, timeouts); an open provider is skipped and its traffic goes to the next one in the
tenant's order. A health check every ``health_interval_s`` closes the breaker again once the
provider answers, and traffic moves back, since the order always prefers the first closed
provider. Without the health loop (a short-lived process), an open breaker lets one trial
request through after the same interval (half-open).

State is per worker process: each worker learns a provider's health by itself, which costs at
most ``failure_threshold`` failed requests per worker, and needs no shared store to be up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from tailor.delivery.providers import HTTP_PROVIDERS
from tailor.delivery.providers.base import HttpProvider
from tailor.observability.metrics import PROVIDER_CIRCUIT, PROVIDER_REQUESTS

log = logging.getLogger(__name__)

SMTP = "smtp"
KNOWN_PROVIDERS = (SMTP, *HTTP_PROVIDERS)


@dataclass
class Breaker:
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False
    not_before: float = 0.0  # the provider asked us to wait until then (Retry-After)


class ProviderRouter:
    def __init__(
        self,
        http: dict[str, HttpProvider],
        *,
        default_order: Sequence[str],
        failure_threshold: int = 3,
        health_interval_s: float = 60.0,
        smtp_health: Callable[[], Awaitable[bool]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.default_order = list(default_order)
        self._threshold = failure_threshold
        self._interval = health_interval_s
        self._smtp_health = smtp_health
        self._clock = clock
        self._breakers: dict[str, Breaker] = {}

    def order(self, tenant_order: Sequence[str] | None) -> list[str]:
        """The providers to try for a tenant, in order, skipping open breakers. An open one
        whose interval has passed is offered once more (half-open) as a trial."""
        names = list(tenant_order) if tenant_order else self.default_order
        usable = []
        for name in names:
            breaker = self._breaker(name)
            if breaker.opened_at is None:
                usable.append(name)
            elif (
                not breaker.trial_in_flight and self._clock() - breaker.opened_at >= self._interval
            ):
                breaker.trial_in_flight = True
                usable.append(name)
        return usable

    def is_open(self, name: str) -> bool:
        return self._breaker(name).opened_at is not None

    def wait_s(self, name: str) -> float:
        """How long the provider asked us to hold off before the next request."""
        return max(0.0, self._breaker(name).not_before - self._clock())

    def succeeded(self, name: str) -> None:
        PROVIDER_REQUESTS.labels(name, "ok").inc()
        breaker = self._breaker(name)
        breaker.failures = 0
        breaker.trial_in_flight = False
        if breaker.opened_at is not None:
            self._close(name, "a request succeeded")

    def failed(self, name: str, *, retry_after_s: float | None = None, why: str = "") -> None:
        PROVIDER_REQUESTS.labels(name, "failed").inc()
        breaker = self._breaker(name)
        breaker.failures += 1
        breaker.trial_in_flight = False
        if retry_after_s:
            breaker.not_before = max(breaker.not_before, self._clock() + retry_after_s)
        if breaker.opened_at is not None:
            breaker.opened_at = self._clock()  # a failed trial: wait another interval
        elif breaker.failures >= self._threshold:
            breaker.opened_at = self._clock()
            PROVIDER_CIRCUIT.labels(name).set(1)
            log.warning(
                "provider %s: circuit opened after %d consecutive failures (%s); "
                "its traffic fails over",
                name,
                breaker.failures,
                why[:200],
            )

    async def check_health(self) -> None:
        """One round of health checks: close the breaker of each provider that answers."""
        for name, breaker in list(self._breakers.items()):
            if breaker.opened_at is None:
                continue
            provider = self.http.get(name)
            try:
                if provider is not None:
                    healthy = await provider.health()
                elif name == SMTP and self._smtp_health is not None:
                    healthy = await self._smtp_health()
                else:
                    continue
            except Exception as exc:  # a health check must never stop the loop
                log.info("provider %s: health check failed: %s", name, exc)
                healthy = False
            if healthy:
                breaker.failures = 0
                self._close(name, "health check passed")

    async def health_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check_health()

    async def close(self) -> None:
        for provider in self.http.values():
            await provider.close()

    def _close(self, name: str, why: str) -> None:
        breaker = self._breaker(name)
        breaker.opened_at = None
        breaker.trial_in_flight = False
        PROVIDER_CIRCUIT.labels(name).set(0)
        log.warning("provider %s: circuit closed (%s); traffic moves back", name, why)

    def _breaker(self, name: str) -> Breaker:
        return self._breakers.setdefault(name, Breaker())
