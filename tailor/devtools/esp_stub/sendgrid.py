"""SendGrid v3: ``POST /v3/mail/send`` with SendGrid's own validation and error wording, the
Email Activity lookup (``GET /v3/messages``), ``GET /v3/scopes``, and the rate-limit headers."""

from __future__ import annotations

import hmac
import math
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from tailor.devtools.esp_stub.api import Reply, Request, Route, _Api, _header, json_reply
from tailor.devtools.esp_stub.control import Behaviour, _Bucket, valid_address
from tailor.devtools.esp_stub.store import StubMessage, hashed_address

STUB_SENDGRID_KEY = "SG.tailor-stub-key"
SENDGRID_MAX_PERSONALIZATIONS = 1_000
SENDGRID_MAX_SUBSTITUTION_BYTES = 10_000
_SG_ACTIVITY = re.compile(
    r"^\s*unique_args\['tailor_send_id'\]\s*"
    r'(?:=\s*"\d+"|IN\s*\(\s*"\d+"(?:\s*,\s*"\d+")*\s*\))\s*$'
)


def _substitute(template: str, substitutions: dict[str, str]) -> str:
    for tag, value in substitutions.items():
        template = template.replace(tag, value)
    return template


def _substitution_bytes(substitutions: dict[str, Any]) -> int:
    return sum(len(k.encode()) + len(str(v).encode()) for k, v in substitutions.items())


class _SendGridErrors:
    """Collects SendGrid's ``errors`` list, once per (field, message)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._seen: set[tuple[str | None, str]] = set()

    def add(self, message: str, field_name: str | None) -> None:
        if (field_name, message) not in self._seen:
            self._seen.add((field_name, message))
            self.items.append({"message": message, "field": field_name, "help": None})


# SendGrid's own wording, so logs from the stub read like production ones.
_SG_NO_PERSONALIZATIONS = (
    "The personalizations field is required and must have at least one personalization, "
    "and no more than 1000."
)
_SG_NO_TO = (
    "The to array is required for all personalization objects, and must have at least one "
    "email object with a valid email address."
)
_SG_NO_SUBJECT = (
    "The subject is required. You can get around this requirement if you use a template with "
    "a subject defined or if every personalization has a subject defined."
)
_SG_SUBSTITUTIONS = (
    "The total size of your substitutions may not exceed 10,000 bytes per personalization object."
)
_SG_ORDER = (
    "If present, text/plain content must be first, followed by text/html, followed by any "
    "other content."
)


def _sendgrid_content_errors(content: Any, errors: _SendGridErrors) -> None:
    if not isinstance(content, list) or not content:
        errors.add("Unless a valid template_id is provided, content is required.", "content")
        return
    types = [part.get("type") for part in content]
    html_at = 1 if "text/plain" in types else 0
    plain_ok = "text/plain" not in types or types.index("text/plain") == 0
    html_ok = "text/html" not in types or types.index("text/html") == html_at
    if not (plain_ok and html_ok):
        errors.add(_SG_ORDER, "content")
    for k, part in enumerate(content):
        if not isinstance(part.get("value"), str) or not part["value"]:
            errors.add("The content value must be at least one character.", f"content.{k}.value")


def _sendgrid_person_errors(
    i: int,
    person: dict[str, Any],
    body: dict[str, Any],
    behaviour: Behaviour,
    errors: _SendGridErrors,
) -> None:
    to = person.get("to")
    if not isinstance(to, list) or not to:
        errors.add(_SG_NO_TO, f"personalizations.{i}.to")
        return
    for j, recipient in enumerate(to):
        if behaviour.rejects(recipient.get("email") if isinstance(recipient, dict) else ""):
            errors.add("Does not contain a valid address.", f"personalizations.{i}.to.{j}.email")
    if not body.get("subject") and not person.get("subject"):
        errors.add(_SG_NO_SUBJECT, "subject")
    substitutions = person.get("substitutions") or {}
    if _substitution_bytes(substitutions) > SENDGRID_MAX_SUBSTITUTION_BYTES:
        errors.add(_SG_SUBSTITUTIONS, f"personalizations.{i}.substitutions")
    for name in ("custom_args", "headers", "substitutions"):
        if not all(isinstance(v, str) for v in (person.get(name) or {}).values()):
            errors.add(f"The {name} values must be strings.", f"personalizations.{i}.{name}")


def _sendgrid_errors(body: Any, behaviour: Behaviour) -> list[dict[str, Any]]:
    """Validation as SendGrid does it: every error found, and the whole request refused."""
    errors = _SendGridErrors()
    if not isinstance(body, dict):
        errors.add("Bad Request", None)
        return errors.items
    people = body.get("personalizations")
    if not isinstance(people, list) or not 1 <= len(people) <= SENDGRID_MAX_PERSONALIZATIONS:
        errors.add(_SG_NO_PERSONALIZATIONS, "personalizations")
        people = []
    sender = body.get("from")
    if not isinstance(sender, dict) or not valid_address(sender.get("email")):
        errors.add("The from email does not contain a valid address.", "from.email")
    for i, person in enumerate(people):
        _sendgrid_person_errors(i, person, body, behaviour, errors)
    _sendgrid_content_errors(body.get("content"), errors)
    return errors.items


def _sendgrid_messages(body: dict[str, Any]) -> list[StubMessage]:
    content = {part["type"]: part["value"] for part in body["content"]}
    text, html = content.get("text/plain", ""), content.get("text/html", "")
    headers: dict[str, str] = body.get("headers") or {}
    args: dict[str, str] = body.get("custom_args") or {}
    tags = tuple(body.get("categories") or ())
    messages = []
    for person in body["personalizations"]:
        subs: dict[str, str] = person.get("substitutions") or {}
        merged = {**headers, **(person.get("headers") or {})}
        subject = _substitute(person.get("subject") or body.get("subject", ""), subs)
        own_text, own_html = _substitute(text, subs), _substitute(html, subs)
        metadata = {**args, **(person.get("custom_args") or {})}
        message_id = _header(merged, "message-id")
        for recipient in person["to"]:
            messages.append(
                StubMessage(
                    "sendgrid",
                    recipient["email"],
                    subject,
                    own_text,
                    own_html,
                    message_id,
                    merged,
                    metadata,
                    tags,
                )
            )
    return messages


class SendGridApi(_Api):
    name = "sendgrid"

    def route(self, method: str, path: str) -> Route | None:
        routes = {
            ("POST", "/v3/mail/send"): self.send,
            ("GET", "/v3/messages"): self.activity,
            ("GET", "/v3/scopes"): self.scopes,
        }
        return routes.get((method, path))

    def authorise(self, request: Request) -> Reply | None:
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {STUB_SENDGRID_KEY}".encode()):
            return None
        return self.error(401, "The provided authorization grant is invalid, expired, or revoked")

    def error(self, status: int, message: str) -> Reply:
        return json_reply(status, {"errors": [{"message": message, "field": None, "help": None}]})

    def decorate(self, reply: Reply, bucket: _Bucket, behaviour: Behaviour) -> None:
        rate = behaviour.rate_limit_per_s
        if rate is None:
            limit, remaining, reset_s = 600, 600, 60.0
        else:
            tokens = bucket.tokens if bucket.tokens is not None else max(1.0, rate)
            limit, remaining = max(1, math.ceil(rate)), max(0, math.floor(tokens))
            reset_s = (max(1.0, rate) - tokens) / rate
        reply.headers["X-RateLimit-Limit"] = str(limit)
        reply.headers["X-RateLimit-Remaining"] = str(remaining)
        reply.headers["X-RateLimit-Reset"] = str(math.ceil(time.time() + reset_s))

    def send(self, request: Request, behaviour: Behaviour) -> Reply:
        try:
            body = request.json()
        except ValueError:
            return self.error(400, "Bad Request")
        if errors := _sendgrid_errors(body, behaviour):
            refused = sum(1 for e in errors if str(e["field"]).endswith(".email"))
            self.ledger.count(self.name, "refused", refused)
            self.ledger.count(self.name, "bad_requests")
            return json_reply(400, {"errors": errors})
        self.ledger.add(_sendgrid_messages(body))
        return Reply(202, headers={"X-Message-Id": secrets.token_urlsafe(16)})

    def activity(self, request: Request, behaviour: Behaviour) -> Reply:
        """Email Activity's message list, for the one query Tailor sends."""
        query = (request.query.get("query") or [""])[0]
        limit = int((request.query.get("limit") or ["10"])[0])
        if not _SG_ACTIVITY.match(query) or not 1 <= limit <= 1000:
            message = "invalid syntax: the stub knows unique_args['tailor_send_id'] IN (...) only"
            return self.error(400, message)
        ids = [int(i) for i in re.findall(r"\d+", query.partition("]")[2])]
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        messages = [
            {
                "from_email": "",
                "msg_id": f"stub{n}.{send_id}",
                "subject": "",
                "to_email": hashed_address(address),
                "status": "delivered",
                "opens_count": 0,
                "clicks_count": 0,
                "last_event_time": stamp,
            }
            for n, (send_id, address) in enumerate(self.ledger.accepted(self.name, ids)[:limit])
        ]
        return json_reply(200, {"messages": messages})

    def scopes(self, request: Request, behaviour: Behaviour) -> Reply:
        return json_reply(200, {"scopes": ["mail.send", "messages.read", "user.profile.read"]})
