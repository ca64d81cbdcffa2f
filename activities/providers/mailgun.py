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
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formataddr
from urllib.parse import quote

import httpx

from activities.providers.base import BatchResult, OutgoingEmail, RecipientResult, Verdict
from activities.providers.http import (
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

    async def health(self) -> bool:
        return await self._http.ok(self._http.build("GET", f"/v3/domains/{self._domain}"))

    async def close(self) -> None:
        await self._http.close()
