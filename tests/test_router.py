"""The provider router's circuit breakers, on a controlled clock, with real adapters whose
health checks reach the loopback provider stub."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tailor.delivery.providers.router import ProviderRouter
from tailor.delivery.providers.sendgrid import SendGridProvider
from tailor.devtools.esp_stub import STUB_SENDGRID_KEY, EspStub, running_esp_stub


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def esp() -> AsyncIterator[EspStub]:
    with running_esp_stub() as stub:
        yield stub


@pytest.fixture
async def router(esp: EspStub) -> AsyncIterator[tuple[ProviderRouter, Clock]]:
    clock = Clock()
    sendgrid = SendGridProvider(api_key=STUB_SENDGRID_KEY, base_url=esp.url, timeout_s=5)
    routed = ProviderRouter(
        {"sendgrid": sendgrid},
        default_order=["sendgrid", "smtp"],
        failure_threshold=3,
        health_interval_s=60,
        clock=clock,
    )
    yield routed, clock
    await routed.close()


async def test_three_consecutive_failures_open_the_breaker_and_a_success_resets_the_count(
    router: tuple[ProviderRouter, Clock],
) -> None:
    routed, _ = router
    routed.failed("sendgrid")
    routed.failed("sendgrid")
    routed.succeeded("sendgrid")  # not consecutive any more
    routed.failed("sendgrid")
    routed.failed("sendgrid")
    assert routed.order(None) == ["sendgrid", "smtp"]
    routed.failed("sendgrid")
    assert routed.is_open("sendgrid")
    assert routed.order(None) == ["smtp"]
    assert routed.order(["sendgrid"]) == []  # a tenant with no other provider waits


async def test_an_open_breaker_offers_one_trial_per_interval(
    router: tuple[ProviderRouter, Clock],
) -> None:
    routed, clock = router
    for _ in range(3):
        routed.failed("sendgrid")
    clock.now += 61
    assert routed.order(None) == ["sendgrid", "smtp"]  # the trial
    assert routed.order(None) == ["smtp"]  # only one at a time
    routed.failed("sendgrid")  # the trial failed: another interval
    clock.now += 30
    assert routed.order(None) == ["smtp"]
    clock.now += 31
    assert routed.order(None) == ["sendgrid", "smtp"]
    routed.succeeded("sendgrid")
    assert not routed.is_open("sendgrid")
    assert routed.order(None) == ["sendgrid", "smtp"]


async def test_the_health_check_closes_the_breaker_only_when_the_provider_answers(
    router: tuple[ProviderRouter, Clock], esp: EspStub
) -> None:
    routed, _ = router
    for _ in range(3):
        routed.failed("sendgrid")
    esp.sendgrid.fail_status = 503
    await routed.check_health()
    assert routed.is_open("sendgrid")
    esp.sendgrid.fail_status = None
    await routed.check_health()
    assert not routed.is_open("sendgrid")
    assert routed.order(None)[0] == "sendgrid"  # traffic moves back


async def test_retry_after_holds_requests_without_opening_the_breaker(
    router: tuple[ProviderRouter, Clock],
) -> None:
    routed, clock = router
    routed.failed("sendgrid", retry_after_s=5)
    assert routed.wait_s("sendgrid") == 5
    assert not routed.is_open("sendgrid")
    clock.now += 5
    assert routed.wait_s("sendgrid") == 0
