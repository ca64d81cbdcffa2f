"""Mailgun batch sending: up to 1,000 recipients a request, personalised by recipient variables.

The shared fields are templates (``subject`` is ``%recipient.subject%``, likewise ``text`` and
``html``) and each recipient's values travel in ``recipient-variables``, keyed by address: an
address appears once per request, repeats go in another. Mailgun substitutes recipient variables
anywhere in the message, header fields included, so headers that differ per recipient
(Message-ID, List-Unsubscribe) are sent as ``h:Name=%recipient.h:Name%`` and headers shared by the
batch literally. ``v:tailor_send_id=%recipient.tailor_send_id%`` labels each email for the event
webhooks, next to the campaign and tenant ids.

Mailgun answers with one id for the whole request, so every recipient in it gets that id;
webhooks tell them apart by ``tailor_send_id``.

A 400 for an invalid ``to`` address does not say which one, and nothing was sent: the batch is
halved and each half posted again until the address stands alone (REFUSED, suppressed) and the
others are sent. That costs up to ``MAX_SPLIT_REQUESTS`` extra requests a batch; recipients not
resolved by then are RETRY. Any other 400 means our request was malformed.

Delivery lookups (``delivered``) read the Events API: ``GET /v3/{domain}/events?event=accepted&
user-variables={"tailor_send_id":"12"}``, one query per send, ``LOOKUP_CONCURRENCY`` at a time.
A filter may name any field of an event; ``user-variables`` takes a JSON object, and Mailgun
documents no OR of several. An ``accepted`` event whose ``user-variables`` carry the id means
Mailgun took it (whatever happened next); an empty page means it did not; a page of other events
(a filter read loosely) is paged past, up to ``MAX_EVENT_PAGES``. Events are kept 1 to 30 days
by plan and appear after a lag, which the caller's reconciliation delay must cover.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formataddr
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from tailor.delivery.providers.base import BatchResult, OutgoingEmail, RecipientResult, Verdict
from tailor.delivery.providers.http import (
    MAX_CONNECTIONS,
    LookupFailed,
    ProviderClient,
    Unanswered,
    by_sender,
    merge,
    response_json,
    scrub,
    settle_all,
)

DEFAULT_BASE_URL = "https://api.mailgun.net"
MAX_SPLIT_REQUESTS = 40  # isolates about two bad addresses in a batch of 1,000
EVENTS_PAGE = 300  # events per page: Mailgun's maximum
MAX_EVENT_PAGES = 10
LOOKUP_CONCURRENCY = MAX_CONNECTIONS // 2  # the rest of the pool stays free for sends
_BAD_TO = "'to' parameter is not a valid address"


def distinct_addresses(emails: Sequence[OutgoingEmail]) -> list[list[OutgoingEmail]]:
    """Requests in which no address repeats (recipient variables are keyed by address)."""
    rounds: list[tuple[list[OutgoingEmail], set[str]]] = []
    for email in emails:
        address = email.to_email.lower()
        free = next((r for r in rounds if address not in r[1]), None)
        if free is None:
            free = ([], set())
            rounds.append(free)
        free[0].append(email)
        free[1].add(address)
    return [batch for batch, _ in rounds]


def _split_headers(emails: Sequence[OutgoingEmail]) -> tuple[dict[str, str], list[str]]:
    """Headers with one value for every email, and the names of those that vary."""
    names = dict.fromkeys(name for e in emails for name in e.headers)
    shared, varying = {}, []
    for name in names:
        values = {e.headers.get(name) for e in emails}
        if len(values) == 1 and None not in values:
            shared[name] = values.pop() or ""
        else:
            varying.append(name)
    return shared, varying


def batch_form(emails: Sequence[OutgoingEmail]) -> list[tuple[str, str]]:
    """The fields of one Mailgun batch request for emails of one sender and campaign."""
    first = emails[0]
    shared, varying = _split_headers(emails)
    variables = {
        e.to_email: {
            "subject": e.subject,
            "text": e.text,
            "html": e.html,
            "tailor_send_id": str(e.send_id),
            **{f"h:{name}": e.headers.get(name, "") for name in varying},
        }
        for e in emails
    }
    return [
        ("from", formataddr((first.from_name, first.from_email))),
        *(("to", e.to_email) for e in emails),
        ("subject", "%recipient.subject%"),
        ("text", "%recipient.text%"),
        ("html", "%recipient.html%"),
        ("recipient-variables", json.dumps(variables, ensure_ascii=False)),
        ("o:tag", "tailor"),
        ("o:tag", first.campaign_id),
        ("v:tailor_send_id", "%recipient.tailor_send_id%"),
        ("v:tailor_campaign", first.campaign_id),
        ("v:tailor_tenant", first.tenant_id),
        *((f"h:{name}", value) for name, value in shared.items()),
        *((f"h:{name}", f"%recipient.h:{name}%") for name in varying),
    ]


def _message(response: httpx.Response) -> str:
    body = response_json(response)
    return str(body.get("message", "")) if isinstance(body, dict) else response.text


def event_send_id(item: Any) -> str | None:
    """The ``tailor_send_id`` of an accepted event, or None."""
    if not isinstance(item, dict) or item.get("event") != "accepted":
        return None
    variables = item.get("user-variables")
    if isinstance(variables, str):  # some events carry them as a JSON string
        try:
            variables = json.loads(variables)
        except ValueError:
            return None
    value = variables.get("tailor_send_id") if isinstance(variables, dict) else None
    return None if value is None else str(value)


@dataclass
class _Budget:
    requests: int = MAX_SPLIT_REQUESTS


class MailgunProvider:
    """Mailgun's messages API for one sending domain, with a private API key."""

    name = "mailgun"
    max_batch = 1000

    def __init__(
        self,
        *,
        api_key: str,
        domain: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._domain = quote(domain, safe="")
        self._http = ProviderClient(
            self.name,
            base_url,
            timeout_s,
            key_setting="TAILOR_MAILGUN_API_KEY",
            url_setting="TAILOR_MAILGUN_DOMAIN and TAILOR_MAILGUN_BASE_URL",
            auth=httpx.BasicAuth("api", api_key),
            transport=transport,
        )

    async def send_batch(self, emails: Sequence[OutgoingEmail]) -> BatchResult:
        # One request at a time: Mailgun batches are large, and halving needs the answers.
        budget = _Budget()
        parts = [
            await self._post(batch, budget)
            for group in by_sender(emails)
            for batch in distinct_addresses(group)
        ]
        return merge(emails, parts)

    async def _post(self, emails: list[OutgoingEmail], budget: _Budget) -> BatchResult:
        # multipart/form-data, not urlencoded: HTML goes as it is, without percent-encoding (a
        # twentieth of the CPU for 1,000 recipients). Read into one buffer, so it is written in
        # a few large writes rather than one per field.
        fields = [(name, (None, value)) for name, value in batch_form(emails)]
        request = self._http.build("POST", f"/v3/{self._domain}/messages", files=fields)
        request.read()
        answer = await self._http.send(request)
        if isinstance(answer, Unanswered):
            return answer.result(emails)
        if answer.is_success:
            body = response_json(answer)
            message_id = body.get("id") if isinstance(body, dict) else None
            return BatchResult(
                [RecipientResult(e.send_id, Verdict.ACCEPTED, message_id) for e in emails]
            )
        if (failed := self._http.failure(answer, emails)) is not None:
            return failed
        message = _message(answer)
        if _BAD_TO not in message:
            return self._http.malformed(answer, emails, message)
        return await self._isolate(emails, message, budget)

    async def _isolate(
        self, emails: list[OutgoingEmail], message: str, budget: _Budget
    ) -> BatchResult:
        """Halve a batch Mailgun refused for an unnamed bad address, until it stands alone."""
        if len(emails) == 1:
            detail = scrub(f"mailgun refused the address: {message}")
            return settle_all(emails, Verdict.REFUSED, detail, suppress=True)
        if budget.requests < 2:
            return settle_all(emails, Verdict.RETRY, "mailgun: refused for an unisolated address")
        budget.requests -= 2
        half = len(emails) // 2
        parts = [await self._post(emails[:half], budget), await self._post(emails[half:], budget)]
        return merge(emails, parts)

    async def delivered(self, send_ids: Sequence[int]) -> set[int]:
        pending = iter(dict.fromkeys(send_ids))  # shared: each id is looked up once
        found: set[int] = set()

        async def lookups() -> None:
            for send_id in pending:
                if await self._accepted(send_id):
                    found.add(send_id)

        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels the others
                for _ in range(LOOKUP_CONCURRENCY):
                    group.create_task(lookups())
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return found

    async def _accepted(self, send_id: int) -> bool:
        wanted = str(send_id)
        variables = json.dumps({"tailor_send_id": wanted}, separators=(",", ":"))
        params = {"event": "accepted", "user-variables": variables, "limit": EVENTS_PAGE}
        url = f"/v3/{self._domain}/events?{urlencode(params)}"
        for _ in range(MAX_EVENT_PAGES):
            _, body = await self._http.lookup(self._http.build("GET", url))
            items, paging = body.get("items"), body.get("paging")
            if not isinstance(items, list):
                raise LookupFailed("mailgun: unreadable events answer")
            if not items:
                return False
            if any(event_send_id(item) == wanted for item in items):
                return True
            following = paging.get("next") if isinstance(paging, dict) else None
            # Followed only on our own host: the request carries the API key.
            if not isinstance(following, str) or not following.startswith(
                f"{self._http.base_url}/"
            ):
                raise LookupFailed("mailgun: events answer without a next page")
            url = following
        raise LookupFailed(f"mailgun: send {send_id} not settled in {MAX_EVENT_PAGES} pages")

    async def health(self) -> bool:
        return await self._http.ok(self._http.build("GET", f"/v3/domains/{self._domain}"))

    async def close(self) -> None:
        await self._http.close()
