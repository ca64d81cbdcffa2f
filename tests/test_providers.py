"""The SendGrid, Mailgun and SES adapters against the loopback provider stub.

The adapters speak real HTTP to ``tailor.devtools.esp_stub``, which checks their requests as the
providers do (SigV4 included) and records what it accepted, so these tests see the wire format
and every error mapping end to end.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tailor.config import Settings
from tailor.delivery.providers import (
    BatchResult,
    HttpProvider,
    LookupFailed,
    OutgoingEmail,
    Verdict,
    http_provider,
)
from tailor.delivery.providers.http import retry_after_s
from tailor.delivery.providers.mailgun import event_send_id
from tailor.delivery.providers.sendgrid import MAX_SUBSTITUTION_BYTES
from tailor.delivery.providers.ses import entry_result
from tailor.devtools.esp_stub import (
    STUB_MAILGUN_DOMAIN,
    STUB_MAILGUN_KEY,
    STUB_SENDGRID_KEY,
    STUB_SES_ACCESS_KEY,
    STUB_SES_SECRET,
    EspStub,
    running_esp_stub,
)

PROVIDERS = ["sendgrid", "mailgun", "ses"]
LOOKUPS = ["sendgrid", "mailgun"]  # SES has no delivery lookup
WRONG_CREDENTIALS = {
    "sendgrid": {"sendgrid_api_key": "SG.revoked"},
    "mailgun": {"mailgun_api_key": "key-revoked"},
    "ses": {"ses_secret_access_key": "not-the-secret"},  # signs, but with the wrong key
}
KEY_SETTING = {
    "sendgrid": "TAILOR_SENDGRID_API_KEY",
    "mailgun": "TAILOR_MAILGUN_API_KEY",
    "ses": "TAILOR_SES_SECRET_ACCESS_KEY",
}


@pytest.fixture(scope="module")
def server() -> Iterator[EspStub]:
    with running_esp_stub() as stub:
        yield stub


@pytest.fixture
def esp(server: EspStub) -> EspStub:
    server.reset()
    return server


def stub_settings(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "sendgrid_api_key": STUB_SENDGRID_KEY,
        "sendgrid_base_url": url,
        "mailgun_api_key": STUB_MAILGUN_KEY,
        "mailgun_domain": STUB_MAILGUN_DOMAIN,
        "mailgun_base_url": url,
        "ses_access_key_id": STUB_SES_ACCESS_KEY,
        "ses_secret_access_key": STUB_SES_SECRET,
        "ses_endpoint_url": url,
        "provider_timeout_s": 2.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def adapter(name: str, url: str, **overrides: object) -> AsyncIterator[HttpProvider]:
    provider = http_provider(name, stub_settings(url, **overrides))
    try:
        yield provider
    finally:
        await provider.close()


def email(i: int, *, to: str | None = None, html: str | None = None) -> OutgoingEmail:
    # Values that look like each provider's placeholders must arrive untouched.
    return OutgoingEmail(
        send_id=i,
        tenant_id="demo",
        campaign_id="cmp-1",
        to_email=to or f"reader{i}@example.com",
        from_email="news@brand.example",
        from_name="Brand Nørdwind",
        subject=f"Héllo {i}: 50% off {{{{first_name}}}}",
        text=f"Text for {i}, %recipient.subject% stays as written",
        html=html or f"<p>HTML for {i} &amp; {{{{{{html}}}}}}</p>",
        headers={
            "Message-ID": f"<cmp-1.{i}@tailor.example>",
            "List-Unsubscribe": f"<https://t.example/u/{i}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Tailor-Campaign": "cmp-1",
        },
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def verdicts(result: BatchResult) -> list[Verdict]:
    return [r.verdict for r in result.results]


# -- delivery and wire format -------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_batch_arrives_personalised_in_one_request(esp: EspStub, name: str) -> None:
    emails = [email(i) for i in range(1, 4)]
    async with adapter(name, esp.url) as provider:
        result = await provider.send_batch(emails)

    assert verdicts(result) == [Verdict.ACCEPTED] * 3
    assert all(r.provider_message_id for r in result.results)
    assert not result.provider_failed
    assert esp.stats()["providers"][name]["requests"] == 1
    received = {m.to: m for m in esp.messages(name)}
    for sent in emails:
        got = received[sent.to_email]
        assert (got.subject, got.text, got.html) == (sent.subject, sent.text, sent.html)
        assert got.message_id == sent.headers["Message-ID"]
        for header in ("List-Unsubscribe", "List-Unsubscribe-Post", "X-Tailor-Campaign"):
            assert got.headers[header] == sent.headers[header]
        # Metadata travels to webhooks and logs: Tailor ids only, never an address.
        assert got.metadata == {
            "tailor_send_id": str(sent.send_id),
            "tailor_campaign": "cmp-1",
            "tailor_tenant": "demo",
        }
        assert not any("@" in value for value in got.metadata.values())


async def test_sendgrid_sends_oversized_emails_alone_with_literal_content(esp: EspStub) -> None:
    big = "<p>" + "x" * MAX_SUBSTITUTION_BYTES + "</p>"
    tagged = replace(email(3), text="mentions -tailor_html- literally")
    emails = [email(1), email(2, html=big), tagged]
    async with adapter("sendgrid", esp.url) as provider:
        result = await provider.send_batch(emails)

    assert verdicts(result) == [Verdict.ACCEPTED] * 3
    assert esp.stats()["providers"]["sendgrid"]["requests"] == 3
    received = {m.to: m for m in esp.messages("sendgrid")}
    assert received["reader2@example.com"].html == big
    assert received["reader3@example.com"].text == "mentions -tailor_html- literally"
    assert received["reader1@example.com"].tags == ("tailor", "cmp-1")


async def test_mailgun_repeats_an_address_in_a_second_request(esp: EspStub) -> None:
    emails = [email(1), email(2, to="Reader1@example.com"), email(3)]
    async with adapter("mailgun", esp.url) as provider:
        result = await provider.send_batch(emails)

    assert verdicts(result) == [Verdict.ACCEPTED] * 3
    assert esp.stats()["providers"]["mailgun"]["requests"] == 2
    assert sorted(m.metadata["tailor_send_id"] for m in esp.messages("mailgun")) == ["1", "2", "3"]


# -- provider failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
async def test_refused_credentials_retry_and_name_the_setting(esp: EspStub, name: str) -> None:
    async with adapter(name, esp.url, **WRONG_CREDENTIALS[name]) as provider:
        result = await provider.send_batch([email(1), email(2)])

    assert verdicts(result) == [Verdict.RETRY] * 2
    assert result.provider_failed
    assert not any(r.suppress for r in result.results)
    assert KEY_SETTING[name] in (result.results[0].detail or "")
    assert esp.stats()["providers"][name]["unauthorised"] == 1
    assert esp.messages(name) == []


async def test_ses_verifies_the_signature_over_the_body(esp: EspStub) -> None:
    async with adapter("ses", esp.url) as provider:
        assert await provider.health()
    signed = httpx.Headers({"Authorization": "AWS4-HMAC-SHA256 Credential="})
    async with httpx.AsyncClient(base_url=esp.url) as client:
        response = await client.get("/v2/email/account", headers=signed)
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"


@pytest.mark.parametrize("name", PROVIDERS)
async def test_an_outage_is_retry_and_counts_against_the_provider(esp: EspStub, name: str) -> None:
    esp.behaviour(name).fail_status = 503
    esp.behaviour(name).fail_retry_after_s = 12
    async with adapter(name, esp.url) as provider:
        result = await provider.send_batch([email(1), email(2)])

    assert verdicts(result) == [Verdict.RETRY] * 2
    assert result.provider_failed
    assert result.retry_after_s == 12


@pytest.mark.parametrize("name", PROVIDERS)
async def test_rate_limit_answers_429_with_the_wait(esp: EspStub, name: str) -> None:
    esp.behaviour(name).rate_limit_per_s = 0.5  # one request, then a token every 2 s
    async with adapter(name, esp.url) as provider:
        first = await provider.send_batch([email(1)])
        second = await provider.send_batch([email(2)])

    assert verdicts(first) == [Verdict.ACCEPTED]
    assert verdicts(second) == [Verdict.RETRY]
    assert second.provider_failed
    assert second.retry_after_s is not None and 1 <= second.retry_after_s <= 2
    assert esp.stats()["providers"][name]["rate_limited"] == 1


async def test_an_outage_for_a_while_ends_by_itself(esp: EspStub) -> None:
    esp.ses.fail_status = 500
    esp.ses.fail_until = time.monotonic() + 0.3
    async with adapter("ses", esp.url) as provider:
        assert verdicts(await provider.send_batch([email(1)])) == [Verdict.RETRY]
        await asyncio.sleep(0.35)
        assert verdicts(await provider.send_batch([email(1)])) == [Verdict.ACCEPTED]


def test_retry_after_reads_seconds_dates_and_rate_limit_resets() -> None:
    now = time.time()
    in_30s = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    reset = {"X-RateLimit-Reset": str(int(now) + 20)}

    def wait(status: int, headers: dict[str, str] | None = None) -> float | None:
        return retry_after_s(httpx.Response(status, headers=headers), now)

    assert wait(429, {"Retry-After": "7"}) == 7
    assert 28 <= (wait(503, {"Retry-After": in_30s}) or 0) <= 30
    assert wait(429, reset) == pytest.approx(20, abs=1)
    # On a success, a reset only matters once the limit is spent.
    assert wait(202, {**reset, "X-RateLimit-Remaining": "5"}) is None
    assert wait(202, {**reset, "X-RateLimit-Remaining": "0"}) == pytest.approx(20, abs=1)
    assert wait(503) is None


# -- recipients refused -------------------------------------------------------------------------


async def test_sendgrid_refuses_the_named_recipient_and_retries_the_rest(esp: EspStub) -> None:
    esp.sendgrid.reject_addresses = {"reader2@example.com"}
    async with adapter("sendgrid", esp.url) as provider:
        result = await provider.send_batch([email(1), email(2), email(3)])

    assert verdicts(result) == [Verdict.RETRY, Verdict.REFUSED, Verdict.RETRY]
    refused = result.results[1]
    assert refused.suppress
    assert "personalizations.1.to.0.email" in (refused.detail or "")
    assert "@" not in (refused.detail or "")
    assert not result.provider_failed
    assert esp.messages("sendgrid") == []  # SendGrid rejects the whole request


async def test_mailgun_isolates_an_unnamed_bad_address(esp: EspStub) -> None:
    esp.mailgun.reject_addresses = {"reader3@example.com"}
    async with adapter("mailgun", esp.url) as provider:
        result = await provider.send_batch([email(i) for i in range(1, 7)])

    assert verdicts(result) == [Verdict.ACCEPTED] * 2 + [Verdict.REFUSED] + [Verdict.ACCEPTED] * 3
    assert result.results[2].suppress
    assert sorted(m.to for m in esp.messages("mailgun")) == [
        f"reader{i}@example.com" for i in (1, 2, 4, 5, 6)
    ]


async def test_ses_refuses_one_entry_and_accepts_the_others(esp: EspStub) -> None:
    esp.ses.reject_addresses = {"reader2@example.com"}
    async with adapter("ses", esp.url) as provider:
        result = await provider.send_batch([email(1), email(2), email(3)])

    assert verdicts(result) == [Verdict.ACCEPTED, Verdict.REFUSED, Verdict.ACCEPTED]
    assert result.results[1].suppress
    assert len(esp.messages("ses")) == 2


async def test_a_malformed_request_is_refused_visibly_not_suppressed(esp: EspStub) -> None:
    bad_sender = replace(email(1), from_email="not-an-address")
    async with adapter("sendgrid", esp.url) as provider:
        result = await provider.send_batch([bad_sender])

    assert verdicts(result) == [Verdict.REFUSED]
    assert not result.results[0].suppress
    assert "malformed" in (result.results[0].detail or "")


@pytest.mark.parametrize(
    ("status", "verdict", "suppress", "provider_failed"),
    [
        ("SUCCESS", Verdict.ACCEPTED, False, False),
        ("INVALID_PARAMETER", Verdict.REFUSED, True, False),  # "Illegal address"
        ("MESSAGE_REJECTED", Verdict.REFUSED, False, False),
        ("TRANSIENT_FAILURE", Verdict.RETRY, False, True),
        ("ACCOUNT_DAILY_QUOTA_EXCEEDED", Verdict.RETRY, False, True),
        ("MAIL_FROM_DOMAIN_NOT_VERIFIED", Verdict.RETRY, False, True),
    ],
)
def test_ses_entry_statuses(
    status: str, verdict: Verdict, suppress: bool, provider_failed: bool
) -> None:
    entry = {"Status": status, "Error": "Illegal address", "MessageId": "m-1"}
    result, failed = entry_result(email(1), entry)
    assert (result.verdict, result.suppress, failed) == (verdict, suppress, provider_failed)


# -- no answer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_hang_up_after_the_request_is_ambiguous(esp: EspStub, name: str) -> None:
    esp.behaviour(name).drop_after_read = True
    async with adapter(name, esp.url) as provider:
        result = await provider.send_batch([email(1), email(2)])

    assert verdicts(result) == [Verdict.AMBIGUOUS] * 2
    assert result.provider_failed
    # The stub took them: resending would have duplicated them.
    assert len(esp.messages(name)) == 2


async def test_a_read_timeout_is_ambiguous(esp: EspStub) -> None:
    esp.sendgrid.latency_s = 0.5
    async with adapter("sendgrid", esp.url, provider_timeout_s=0.2) as provider:
        result = await provider.send_batch([email(1)])
    assert verdicts(result) == [Verdict.AMBIGUOUS]
    await asyncio.sleep(0.5)  # the stub was still working on it: it accepts it after all
    assert [m.to for m in esp.messages("sendgrid")] == [email(1).to_email]


@pytest.mark.parametrize("name", PROVIDERS)
async def test_connection_refused_is_retry(name: str) -> None:
    async with adapter(name, f"http://127.0.0.1:{closed_port()}") as provider:
        result = await provider.send_batch([email(1), email(2)])
        healthy = await provider.health()

    assert verdicts(result) == [Verdict.RETRY] * 2
    assert result.provider_failed
    assert not healthy


# -- delivery lookups ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOOKUPS)
async def test_delivered_names_exactly_the_sends_the_provider_took(esp: EspStub, name: str) -> None:
    sent = list(range(1, 251))  # more than one SendGrid query's worth of ids
    never = list(range(1001, 1011))
    async with adapter(name, esp.url) as provider:
        for start in range(0, len(sent), 50):
            await provider.send_batch([email(i) for i in sent[start : start + 50]])
        asked = [never[0], *sent[:125], never[1], *sent[125:], *never[2:]]
        assert await provider.delivered(asked) == set(sent)
        assert await provider.delivered(never) == set()
        assert await provider.delivered([]) == set()


@pytest.mark.parametrize("name", LOOKUPS)
async def test_a_send_taken_twice_does_not_vouch_for_a_missing_one(esp: EspStub, name: str) -> None:
    async with adapter(name, esp.url) as provider:
        await provider.send_batch([email(1), email(2)])
        await provider.send_batch([email(2)])  # three messages at the provider for two sends
        assert await provider.delivered([1, 2, 3]) == {1, 2}


LOOKUP_FAULTS: dict[str, dict[str, object]] = {
    "outage": {"fail_status": 503, "fail_retry_after_s": 30},
    "hang-up": {"drop_after_read": True},
}


@pytest.mark.parametrize("fault", LOOKUP_FAULTS)
@pytest.mark.parametrize("name", LOOKUPS)
async def test_a_failed_lookup_raises_and_never_reads_as_not_delivered(
    esp: EspStub, name: str, fault: str
) -> None:
    async with adapter(name, esp.url) as provider:
        await provider.send_batch([email(1)])
        esp.behaviour(name).update(LOOKUP_FAULTS[fault])
        with pytest.raises(LookupFailed) as failed:
            await provider.delivered([1, 2])
    if fault == "outage":
        assert "503" in str(failed.value) and failed.value.retry_after_s == 30


async def test_ses_cannot_tell(esp: EspStub) -> None:
    async with adapter("ses", esp.url) as provider:
        await provider.send_batch([email(1)])
        assert await provider.delivered([1, 2]) is None


async def test_sendgrid_lookups_wait_out_a_spent_rate_limit(esp: EspStub) -> None:
    esp.sendgrid.rate_limit_per_s = 3  # 3 requests, then none until the reset a second on
    async with adapter("sendgrid", esp.url) as provider:
        await provider.send_batch([email(1), email(2)])
        assert await provider.delivered([1, 901, 2]) == {1, 2}  # 5 lookups: [1, 901, 2] split
    counts = esp.stats()["providers"]["sendgrid"]
    assert (counts["requests"], counts["rate_limited"]) == (6, 0)


def test_mailgun_reads_user_variables_as_an_object_or_a_json_string() -> None:
    assert event_send_id({"event": "accepted", "user-variables": {"tailor_send_id": "7"}}) == "7"
    assert event_send_id({"event": "accepted", "user-variables": '{"tailor_send_id": 7}'}) == "7"
    assert event_send_id({"event": "accepted", "user-variables": "not json"}) is None
    assert event_send_id({"event": "delivered", "user-variables": {"tailor_send_id": "7"}}) is None


# -- health, settings, the stub itself ----------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
async def test_health(esp: EspStub, name: str) -> None:
    async with adapter(name, esp.url) as provider:
        assert await provider.health()
        esp.behaviour(name).fail_status = 503
        assert not await provider.health()
    async with adapter(name, esp.url, **WRONG_CREDENTIALS[name]) as provider:
        esp.behaviour(name).fail_status = None
        assert not await provider.health()


@pytest.mark.parametrize(
    ("name", "missing", "setting"),
    [
        ("sendgrid", "sendgrid_api_key", "TAILOR_SENDGRID_API_KEY"),
        ("mailgun", "mailgun_domain", "TAILOR_MAILGUN_DOMAIN"),
        ("ses", "ses_access_key_id", "TAILOR_SES_ACCESS_KEY_ID"),
    ],
)
def test_the_factory_names_a_missing_setting(name: str, missing: str, setting: str) -> None:
    with pytest.raises(ValueError, match=f"{setting} is not set"):
        http_provider(name, stub_settings("http://127.0.0.1:1", **{missing: None}))
    with pytest.raises(ValueError, match="unknown HTTP email provider 'smtp'"):
        http_provider("smtp", stub_settings("http://127.0.0.1:1"))


async def test_another_process_steers_the_stub_over_http(esp: EspStub) -> None:
    async with httpx.AsyncClient(base_url=esp.url) as control, adapter("mailgun", esp.url) as mg:
        answer = await control.post(
            "/_stub/behaviour", json={"provider": "mailgun", "fail_status": 503, "fail_for_s": 60}
        )
        assert answer.status_code == 200
        assert verdicts(await mg.send_batch([email(1)])) == [Verdict.RETRY]

        await control.post("/_stub/behaviour", json={"provider": "mailgun", "fail_status": None})
        await mg.send_batch([email(1)])
        await mg.send_batch([email(1)])  # the same send again: a duplicate

        messages = (await control.get("/_stub/messages", params={"provider": "mailgun"})).json()
        stats = (await control.get("/_stub/stats")).json()
        later = await control.get("/_stub/messages", params={"since": messages["last"]})
        bad = await control.post("/_stub/behaviour", json={"provider": "mailgun", "typo": 1})

    assert [m["subject"] for m in messages["messages"]] == [email(1).subject] * 2
    assert stats["providers"]["mailgun"]["failed"] == 1
    assert (stats["messages"], stats["unique"], stats["duplicates"]) == (2, 1, 1)
    assert stats["duplicate_ids"] == ["<cmp-1.1@tailor.example>"]
    assert later.json()["messages"] == []
    assert bad.status_code == 400


async def test_the_stub_keeps_recent_bodies_and_counts_everything() -> None:
    with running_esp_stub(keep=2) as esp:
        async with adapter("sendgrid", esp.url) as provider:
            await provider.send_batch([email(i) for i in range(1, 6)])
            # Lookups answer from the send ids it keeps for every message, not from bodies.
            assert await provider.delivered(range(1, 7)) == set(range(1, 6))
        assert [m.to for m in esp.messages()] == ["reader4@example.com", "reader5@example.com"]
        assert esp.stats()["messages"] == esp.stats()["unique"] == 5
