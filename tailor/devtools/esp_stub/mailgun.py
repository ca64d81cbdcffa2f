"""Mailgun: ``POST /v3/{domain}/messages`` (form fields, recipient variables), the Events API
lookup (``GET /v3/{domain}/events`` and its pages) and ``GET /v3/domains/{domain}``."""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import time
from datetime import UTC, datetime
from email.utils import getaddresses
from typing import Any
from urllib.parse import parse_qsl

from tailor.devtools.esp_stub.api import Reply, Request, Route, _Api, _header, json_reply
from tailor.devtools.esp_stub.control import Behaviour
from tailor.devtools.esp_stub.store import StubMessage, hashed_address

STUB_MAILGUN_KEY = "key-tailor-stub"
STUB_MAILGUN_DOMAIN = "mg.tailor.test"  # any domain is served; this one is for settings
MAILGUN_MAX_RECIPIENTS = 1_000
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')
_FIELD_NAME = re.compile(rb'(?<![a-z])name="([^"]*)"')
_MAILGUN_VARIABLE = re.compile(r"%recipient\.([^%]+)%")
_MAILGUN_MESSAGES = re.compile(r"^/v3/([^/]+)/messages$")
_MAILGUN_DOMAIN = re.compile(r"^/v3/domains/([^/]+)$")
_MAILGUN_EVENTS = re.compile(r"^/v3/([^/]+)/events(?:/([A-Za-z0-9_=-]+))?$")


def _form(request: Request) -> list[tuple[str, str]]:
    """The fields of a multipart/form-data or urlencoded body, repeated names kept, files
    left out. Parsed by hand: the email package takes ~0.25 s for a batch of 1,000."""
    kind = request.headers.get("content-type", "")
    boundary = _BOUNDARY.search(kind)
    if not kind.startswith("multipart/form-data") or boundary is None:
        return parse_qsl(request.body.decode(), keep_blank_values=True)
    pairs = []
    for part in request.body.split(b"--" + boundary[1].encode())[1:-1]:
        head, _, value = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = _FIELD_NAME.search(head)
        if name is not None and b"filename=" not in head:
            pairs.append((name[1].decode(), value.removesuffix(b"\r\n").decode()))
    return pairs


class _MailgunRequestError(ValueError):
    pass


def _mailgun_fields(
    pairs: list[tuple[str, str]], behaviour: Behaviour
) -> tuple[list[str], dict[str, Any]]:
    """The recipients and the recipient variables, or the 400 Mailgun would answer."""
    single = dict(pairs)
    recipients = [address for _, address in getaddresses([v for k, v in pairs if k == "to"])]
    for name in ("from", "subject"):
        if not single.get(name):
            raise _MailgunRequestError(f"{name} parameter is missing")
    if not recipients:
        raise _MailgunRequestError("to parameter is missing")
    if len(recipients) > MAILGUN_MAX_RECIPIENTS:
        raise _MailgunRequestError("Too many recipients: the limit is 1000")
    if any(behaviour.rejects(address) for address in recipients):
        raise _MailgunRequestError(
            "'to' parameter is not a valid address. please check documentation"
        )
    if not (single.get("text") or single.get("html")):
        raise _MailgunRequestError("Need at least one of 'text' or 'html' parameters specified")
    try:
        variables = json.loads(single.get("recipient-variables") or "{}")
    except ValueError:
        raise _MailgunRequestError("recipient-variables parameter is not a valid JSON") from None
    if not isinstance(variables, dict):
        raise _MailgunRequestError("recipient-variables parameter is not a valid JSON")
    return recipients, variables


def _mailgun_messages(
    pairs: list[tuple[str, str]], recipients: list[str], variables: dict[str, Any]
) -> list[StubMessage]:
    single = dict(pairs)
    headers = [(k[2:], v) for k, v in pairs if k.startswith("h:")]
    user_vars = [(k[2:], v) for k, v in pairs if k.startswith("v:")]
    tags = tuple(v for k, v in pairs if k == "o:tag")
    messages = []
    for address in recipients:
        own = variables.get(address) or variables.get(address.lower()) or {}

        def sub(value: str, own: dict[str, Any] = own) -> str:
            return _MAILGUN_VARIABLE.sub(lambda m: str(own.get(m[1], "")), value)

        merged = {k: sub(v) for k, v in headers}
        messages.append(
            StubMessage(
                "mailgun",
                address,
                sub(single["subject"]),
                sub(single.get("text", "")),
                sub(single.get("html", "")),
                _header(merged, "message-id"),
                merged,
                {k: sub(v) for k, v in user_vars},
                tags,
            )
        )
    return messages


class MailgunApi(_Api):
    name = "mailgun"

    def route(self, method: str, path: str) -> Route | None:
        if method == "POST" and _MAILGUN_MESSAGES.match(path):
            return self.send
        if method == "GET" and _MAILGUN_DOMAIN.match(path):
            return self.domain
        if method == "GET" and _MAILGUN_EVENTS.match(path):
            return self.events
        return None

    def authorise(self, request: Request) -> Reply | None:
        given = request.headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(f"api:{STUB_MAILGUN_KEY}".encode()).decode()
        if hmac.compare_digest(given.encode(), expected.encode()):
            return None
        return Reply(401, b"Forbidden", {"Content-Type": "text/plain"})

    def send(self, request: Request, behaviour: Behaviour) -> Reply:
        pairs = _form(request)
        try:
            recipients, variables = _mailgun_fields(pairs, behaviour)
        except _MailgunRequestError as exc:
            self.ledger.count(self.name, "bad_requests")
            if "'to'" in str(exc):
                bad = [v for k, v in pairs if k == "to" and behaviour.rejects(v)]
                self.ledger.count(self.name, "refused", len(bad))
            return self.error(400, str(exc))
        self.ledger.add(_mailgun_messages(pairs, recipients, variables))
        match = _MAILGUN_MESSAGES.match(request.path)
        domain = match[1] if match else STUB_MAILGUN_DOMAIN
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        message_id = f"<{stamp}.{secrets.token_hex(8)}@{domain}>"
        return json_reply(200, {"id": message_id, "message": "Queued. Thank you."})

    def events(self, request: Request, behaviour: Behaviour) -> Reply:
        """The Events API for the one filter Tailor sends, a page at a time (ValueError: 400)."""
        match = _MAILGUN_EVENTS.match(request.path)
        assert match is not None
        if match[2]:  # the token of a next or previous page
            wanted, start, limit = json.loads(base64.urlsafe_b64decode(match[2]))
        else:
            variables = json.loads((request.query.get("user-variables") or ["{}"])[0])
            event = (request.query.get("event") or [""])[0]
            limit = int((request.query.get("limit") or ["100"])[0])
            if event != "accepted" or not 1 <= limit <= 300:
                raise ValueError("the stub keeps accepted events only, 300 a page at most")
            if not isinstance(variables, dict) or set(variables) != {"tailor_send_id"}:
                raise ValueError("the stub filters user-variables on tailor_send_id only")
            wanted, start = str(variables["tailor_send_id"]), 0
        ids = [int(wanted)] if wanted.isascii() and wanted.isdigit() else []
        page = self.ledger.accepted(self.name, ids)[start : start + limit]
        items = [
            {
                "event": "accepted",
                "id": f"stub{n}.{send_id}",
                "timestamp": time.time(),
                "recipient": hashed_address(address),
                "method": "http",
                "user-variables": {"tailor_send_id": str(send_id)},
            }
            for n, (send_id, address) in enumerate(page, start)
        ]
        base = f"http://{request.headers.get('host', '')}/v3/{match[1]}/events"

        def page_url(offset: int) -> str:
            token = base64.urlsafe_b64encode(json.dumps([wanted, offset, limit]).encode())
            return f"{base}/{token.decode()}"

        paging = {"next": page_url(start + len(items)), "previous": page_url(max(0, start - limit))}
        return json_reply(200, {"items": items, "paging": paging})

    def domain(self, request: Request, behaviour: Behaviour) -> Reply:
        match = _MAILGUN_DOMAIN.match(request.path)
        name = match[1] if match else STUB_MAILGUN_DOMAIN
        return json_reply(200, {"domain": {"name": name, "state": "active", "type": "custom"}})
