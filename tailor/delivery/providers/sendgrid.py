"""SendGrid v3 Mail Send: up to 1,000 personalised emails in one request.

Every recipient's subject and body differ, so each personalization carries its own ``subject``
and legacy ``substitutions`` for the bodies: the shared content is just the tags ``-tailor_text-``
and ``-tailor_html-``. SendGrid caps substitutions at 10,000 bytes per personalization; an email
over it (or whose own text holds a tag) goes in a request of its own with literal content.

Per-personalization ``headers`` carry Message-ID and List-Unsubscribe*, ``custom_args`` only
Tailor ids (echoed in SendGrid's event webhooks), ``categories`` are "tailor" and the campaign.

SendGrid answers 202 with one ``X-Message-Id`` for the request; a recipient's id here is that
id plus ``.<personalization index>`` (its webhook ``sg_message_id`` starts with the former).
A 400 rejects the whole request; errors whose ``field`` is ``personalizations.N...`` name the
recipient at fault (REFUSED; suppressed for an invalid address) and the others go again (RETRY).

Delivery lookups (``delivered``) use the Email Activity API (a paid add-on; the key needs the
``messages.read`` scope): ``GET /v3/messages?limit=1000&query=`` with
``unique_args['tailor_send_id'] IN ("12","13")``: v3 ``custom_args`` are the feed's
``unique_args``, ``IN`` is in its operator list, and ``['key']`` picks one argument. Any message
found counts, whatever its status: ``not_delivered`` (bounced, dropped) was still accepted.
Answers have no paging and do not echo the arguments (only ``GET /v3/messages/{msg_id}`` does,
a message a request), so a group of ids is settled by what it matches: nothing means none went;
as many messages as ids, to as many distinct addresses, means all did (a send has one address,
so a send accepted twice cannot stand in for a missing one); more addresses than ids means the
query was not applied (LookupFailed); anything else is split in halves and asked again. A lost
batch usually went all or nothing: about one request per 200 ids. The API allows 6 requests a
minute, so lookups go one at a time and wait out ``X-RateLimit-Reset`` once
``X-RateLimit-Remaining`` is 0. Activity is kept 3 days (30 with the add-on) and shows up after
a lag, which the caller's reconciliation delay must cover.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from tailor.delivery.providers.base import BatchResult, OutgoingEmail, RecipientResult, Verdict
from tailor.delivery.providers.http import (
    LookupFailed,
    ProviderClient,
    Unanswered,
    by_sender,
    merge,
    response_json,
    retry_after_s,
    scrub,
    settle_all,
)

DEFAULT_BASE_URL = "https://api.sendgrid.com"
TEXT_TAG = "-tailor_text-"
HTML_TAG = "-tailor_html-"
MAX_SUBSTITUTION_BYTES = 10_000
ACTIVITY_LIMIT = 1000  # messages in one Email Activity answer: its maximum (the default is 10)
ACTIVITY_IDS = 200  # send ids per query: a URL of at most ~6 KB
MAX_RATE_WAIT_S = 65.0  # the limit resets each minute; a longer wait is the caller's to make
_PERSONALIZATION = re.compile(r"^personalizations\.(\d+)\.")


def _substitutions(email: OutgoingEmail) -> dict[str, str]:
    return {TEXT_TAG: email.text, HTML_TAG: email.html}


def _fits(email: OutgoingEmail) -> bool:
    """Whether the email can travel as substitutions: within SendGrid's size limit, and without
    our tags in its own text (they would be substituted too)."""
    values = _substitutions(email)
    if any(tag in text for text in (email.subject, *values.values()) for tag in values):
        return False
    size = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
    return size <= MAX_SUBSTITUTION_BYTES


def _personalization(email: OutgoingEmail, *, templated: bool) -> dict[str, Any]:
    person: dict[str, Any] = {
        "to": [{"email": email.to_email}],
        "subject": email.subject,
        "custom_args": {"tailor_send_id": str(email.send_id)},
    }
    if email.headers:
        person["headers"] = dict(email.headers)
    if templated:
        person["substitutions"] = _substitutions(email)
    return person


def _content(text: str, html: str) -> list[dict[str, str]]:
    # SendGrid refuses empty content values, and wants text/plain before text/html.
    parts = [("text/plain", text), ("text/html", html)]
    return [{"type": kind, "value": value} for kind, value in parts if value]


def mail_send_body(emails: Sequence[OutgoingEmail], *, templated: bool) -> dict[str, Any]:
    """One Mail Send request for emails of one sender and campaign. ``templated``: bodies travel
    as substitutions; otherwise there must be one email and its content goes literally."""
    first = emails[0]
    content = _content(TEXT_TAG, HTML_TAG) if templated else _content(first.text, first.html)
    return {
        "personalizations": [_personalization(e, templated=templated) for e in emails],
        "from": {"email": first.from_email, "name": first.from_name},
        "content": content,
        "custom_args": {"tailor_campaign": first.campaign_id, "tailor_tenant": first.tenant_id},
        "categories": ["tailor", first.campaign_id],
    }


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    body = response_json(response)
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _attribute(
    errors: list[dict[str, Any]], size: int
) -> tuple[dict[int, tuple[str, str]], list[str]]:
    """SendGrid's errors split into those naming a personalization (by index) and the rest."""
    named: dict[int, tuple[str, str]] = {}
    general: list[str] = []
    for error in errors:
        field, message = str(error.get("field") or ""), str(error.get("message") or "")
        match = _PERSONALIZATION.match(field)
        if match and int(match[1]) < size:
            named.setdefault(int(match[1]), (field, message))
        else:
            general.append(f"{field or 'request'}: {message}")
    return named, general


def activity_query(send_ids: Sequence[int]) -> str:
    """The Email Activity query for messages carrying any of these send ids."""
    values = ",".join(f'"{send_id}"' for send_id in send_ids)
    return f"unique_args['tailor_send_id'] IN ({values})"


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise LookupFailed("sendgrid: unreadable Email Activity answer")
    return messages


def _refusal(email: OutgoingEmail, field: str, message: str) -> RecipientResult:
    detail = scrub(f"sendgrid refused {field}: {message}")
    # An invalid address (``personalizations.N.to.0.email``) must not be mailed again.
    suppress = field.endswith(".email")
    return RecipientResult(email.send_id, Verdict.REFUSED, detail=detail, suppress=suppress)


class SendGridProvider:
    """SendGrid's v3 API with an API key (``mail.send`` scope)."""

    name = "sendgrid"
    max_batch = 1000

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = ProviderClient(
            self.name,
            base_url,
            timeout_s,
            key_setting="TAILOR_SENDGRID_API_KEY",
            url_setting="TAILOR_SENDGRID_BASE_URL",
            headers={"Authorization": f"Bearer {api_key}"},
            transport=transport,
        )
        self._activity_lock = asyncio.Lock()  # one Email Activity request at a time
        self._activity_after = 0.0  # time.monotonic() before which the rate limit is spent

    async def send_batch(self, emails: Sequence[OutgoingEmail]) -> BatchResult:
        requests: list[tuple[list[OutgoingEmail], bool]] = []  # (emails, templated)
        for group in by_sender(emails):
            fitting: list[OutgoingEmail] = []
            for email in group:
                if _fits(email):
                    fitting.append(email)
                else:
                    requests.append(([email], False))
            if fitting:
                requests.append((fitting, True))
        parts = await asyncio.gather(
            *(self._post(batch, templated) for batch, templated in requests)
        )
        return merge(emails, parts)

    async def _post(self, emails: list[OutgoingEmail], templated: bool) -> BatchResult:
        body = mail_send_body(emails, templated=templated)
        answer = await self._http.send(self._http.build("POST", "/v3/mail/send", json=body))
        if isinstance(answer, Unanswered):
            return answer.result(emails)
        if answer.is_success:
            request_id = answer.headers.get("x-message-id", "")
            results = [
                RecipientResult(
                    e.send_id, Verdict.ACCEPTED, provider_message_id=f"{request_id}.{i}"
                )
                for i, e in enumerate(emails)
            ]
            return BatchResult(results, retry_after_s=retry_after_s(answer))
        return self._http.failure(answer, emails) or self._refused(answer, emails)

    def _refused(self, response: httpx.Response, emails: list[OutgoingEmail]) -> BatchResult:
        named, general = _attribute(_errors(response), len(emails))
        if general or not named:
            # The request itself is at fault: resending the others as they are cannot succeed.
            others = self._http.malformed(response, emails, "; ".join(general) or response.text)
        else:
            others = settle_all(emails, Verdict.RETRY, "sendgrid: refused for another recipient")
        results = [
            _refusal(email, *named[i]) if i in named else others.results[i]
            for i, email in enumerate(emails)
        ]
        return BatchResult(results)

    async def delivered(self, send_ids: Sequence[int]) -> set[int]:
        ids = list(dict.fromkeys(send_ids))
        found: set[int] = set()
        for start in range(0, len(ids), ACTIVITY_IDS):
            found |= await self._accepted(ids[start : start + ACTIVITY_IDS])
        return found

    async def _accepted(self, ids: list[int]) -> set[int]:
        """Which of these sends SendGrid has a message of (see the module docstring)."""
        messages = await self._activity(ids)
        if not messages:
            return set()
        addresses = {str(m.get("to_email") or "").lower() for m in messages} - {""}
        if len(addresses) > len(ids):  # a query not applied: never to be read as "sent"
            raise LookupFailed("sendgrid: the activity query matched other sends' messages")
        if len(ids) == 1 or len(messages) == len(ids) == len(addresses):
            return set(ids)
        half = len(ids) // 2
        return await self._accepted(ids[:half]) | await self._accepted(ids[half:])

    async def _activity(self, ids: list[int]) -> list[dict[str, Any]]:
        async with self._activity_lock:
            wait = self._activity_after - time.monotonic()
            if wait > MAX_RATE_WAIT_S:
                raise LookupFailed("sendgrid: Email Activity rate limit spent", retry_after_s=wait)
            if wait > 0:
                await asyncio.sleep(wait)
            # Encoded by hand: SendGrid documents %20 for spaces, not the form encoding's "+".
            query = quote(activity_query(ids), safe="")
            url = f"/v3/messages?limit={ACTIVITY_LIMIT}&query={query}"
            response, body = await self._http.lookup(self._http.build("GET", url))
            # retry_after_s reads X-RateLimit-Reset only once X-RateLimit-Remaining is 0.
            self._activity_after = time.monotonic() + (retry_after_s(response) or 0.0)
        return _messages(body)

    async def health(self) -> bool:
        return await self._http.ok(self._http.build("GET", "/v3/scopes"))

    async def close(self) -> None:
        await self._http.close()
