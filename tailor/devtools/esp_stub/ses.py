"""A loopback server that speaks the SendGrid v3, Mailgun and Amazon SES v2 sending APIs.

The real adapters (``activities/providers``) talk to it over HTTP, so tests and benchmarks exercise
their request building, authentication (bearer key, HTTP Basic, and SigV4 *verified*: the stub
recomputes the signature with botocore), error mapping and response parsing.

Each provider is steered through a :class:`Behaviour`: directly from a test
(``stub.sendgrid.fail_status = 503``) or from another process (``POST /_stub/behaviour``).

Accepted messages are recorded cheaply enough for benchmarks of a million recipients: counts and
a hash of every message's identity (its Message-ID, else its ``tailor_send_id``) for all, so
duplicates across providers are counted; full bodies only for the most recent ``keep``; and for
SendGrid and Mailgun, each ``tailor_send_id`` with a hash of its address (~105 MB a million), so
their delivery lookups answer for every message. The stub only stores that hash, so a lookup
names the recipient as ``<hash>@hash.invalid``. Lookups see a message as soon as it is accepted;
the real APIs lag by seconds to minutes, which is why Tailor only reconciles sends older than
``provider_reconcile_after_s``.

Routes::

    POST /v3/mail/send                    GET /v3/scopes                SendGrid
    GET  /v3/messages?query=unique_args['tailor_send_id'] IN ("1","2")
    POST /v3/{domain}/messages            GET /v3/domains/{domain}      Mailgun
    GET  /v3/{domain}/events?event=accepted&user-variables={"tailor_send_id":"1"}, and its pages
    POST /v2/email/outbound-emails        GET /v2/email/account         Amazon SES v2
    POST /v2/email/outbound-bulk-emails
    POST /_stub/behaviour   POST /_stub/reset   GET /_stub/messages   GET /_stub/stats
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

# The name the stub logged under as a single module; log formats show it.
log = logging.getLogger("tailor.devtools.esp_stub")

STUB_SENDGRID_KEY = "SG.tailor-stub-key"
STUB_MAILGUN_KEY = "key-tailor-stub"
STUB_MAILGUN_DOMAIN = "mg.tailor.test"  # any domain is served; this one is for settings
STUB_SES_ACCESS_KEY = "AKIATAILORSTUB000000"
STUB_SES_SECRET = "tailor-stub-secret-access-key"
PROVIDERS = ("sendgrid", "mailgun", "ses")
LOOKUP_PROVIDERS = ("sendgrid", "mailgun")  # SES has no delivery lookup
KEEP_MESSAGES = 2_000
SENDGRID_MAX_PERSONALIZATIONS = 1_000
SENDGRID_MAX_SUBSTITUTION_BYTES = 10_000
MAILGUN_MAX_RECIPIENTS = 1_000
SES_MAX_BULK_ENTRIES = 50
SES_MAX_CLOCK_SKEW_S = 15 * 60

# Syntax only, about as strict as the providers' own checks.
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_SES_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_SES_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^, ]+), ?"
    r"Signature=(?P<signature>[0-9a-f]+)"
)
_SES_PLACEHOLDER = re.compile(r"\{\{\{\s*([\w.-]+)\s*\}\}\}|\{\{\s*([\w.-]+)\s*\}\}")
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')
_FIELD_NAME = re.compile(rb'(?<![a-z])name="([^"]*)"')
_MAILGUN_VARIABLE = re.compile(r"%recipient\.([^%]+)%")
_MAILGUN_MESSAGES = re.compile(r"^/v3/([^/]+)/messages$")
_MAILGUN_DOMAIN = re.compile(r"^/v3/domains/([^/]+)$")
_MAILGUN_EVENTS = re.compile(r"^/v3/([^/]+)/events(?:/([A-Za-z0-9_=-]+))?$")
_SG_ACTIVITY = re.compile(
    r"^\s*unique_args\['tailor_send_id'\]\s*"
    r'(?:=\s*"\d+"|IN\s*\(\s*"\d+"(?:\s*,\s*"\d+")*\s*\))\s*$'
)


def valid_address(address: object) -> bool:
    return isinstance(address, str) and _ADDRESS.match(address) is not None


def hashed_address(address_hash: int) -> str:
    """How a lookup names a recipient: the ledger keeps only a hash of the address."""
    return f"{address_hash & 0xFFFF_FFFF_FFFF_FFFF:016x}@hash.invalid"


# -- control ---------------------------------------------------------------------------------


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


# -- HTTP plumbing ---------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    target: str  # path and query, as sent (SigV4 signs it)
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, payload: object, headers: dict[str, str] | None = None) -> Reply:
    merged = {"Content-Type": "application/json", **(headers or {})}
    return Reply(status, json.dumps(payload).encode(), merged)


Route = Callable[[Request, Behaviour], Reply]


class _Api:
    """One provider's routes, authentication and error format."""

    name = ""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def route(self, method: str, path: str) -> Route | None:
        raise NotImplementedError

    def authorise(self, request: Request) -> Reply | None:
        """None when the credentials are right, else the provider's refusal."""
        raise NotImplementedError

    def error(self, status: int, message: str) -> Reply:
        return json_reply(status, {"message": message})

    def decorate(self, reply: Reply, bucket: _Bucket, behaviour: Behaviour) -> None:
        """Headers every answer carries (SendGrid's rate-limit headers)."""


# -- SendGrid v3 ------------------------------------------------------------------------------


def _substitute(template: str, substitutions: dict[str, str]) -> str:
    for tag, value in substitutions.items():
        template = template.replace(tag, value)
    return template


def _substitution_bytes(substitutions: dict[str, Any]) -> int:
    return sum(len(k.encode()) + len(str(v).encode()) for k, v in substitutions.items())


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


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


# -- Mailgun ----------------------------------------------------------------------------------


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


# -- Amazon SES v2 ----------------------------------------------------------------------------

_SES_ERROR_TYPES = {
    400: "BadRequestException",
    403: "AccessDeniedException",
    404: "NotFoundException",
    429: "TooManyRequestsException",
    500: "InternalFailure",
    503: "ServiceUnavailable",
}


def ses_signature(request: Request, signed: list[str], amz_date: str, region: str) -> str:
    """The SigV4 signature of this request under the stub's secret, as botocore computes it."""
    url = f"http://{request.headers.get('host', '')}{request.target}"
    aws = AWSRequest(
        method=request.method,
        url=url,
        data=request.body,
        headers={name: request.headers.get(name, "") for name in signed},
    )
    aws.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(STUB_SES_ACCESS_KEY, STUB_SES_SECRET), "ses", region)
    canonical = signer.canonical_request(aws)
    return str(signer.signature(signer.string_to_sign(aws, canonical), aws))


_SES_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)


def _ses_auth_problem(request: Request) -> tuple[str, str] | None:
    """(x-amzn-ErrorType, message) when the request is not signed with the stub's key."""
    given = request.headers.get("authorization", "")
    if not given:
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    match = _SES_AUTH.fullmatch(given)
    if match is None:
        return (
            "IncompleteSignatureException",
            "Authorization needs Credential, SignedHeaders, Signature.",
        )
    if match["key"] != STUB_SES_ACCESS_KEY:
        return (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    amz_date = request.headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "IncompleteSignatureException", "X-Amz-Date is missing or malformed."
    if abs((datetime.now(UTC) - signed_at).total_seconds()) > SES_MAX_CLOCK_SKEW_S:
        return "InvalidSignatureException", "Signature expired."
    signed = match["signed"].split(";")
    scoped = match["service"] == "ses" and amz_date.startswith(match["date"]) and "host" in signed
    expected = ses_signature(request, signed, amz_date, match["region"]) if scoped else ""
    if not (scoped and hmac.compare_digest(expected, match["signature"])):
        return "SignatureDoesNotMatchException", _SES_MISMATCH
    return None


def _ses_render(template: str, data: dict[str, Any]) -> str:
    """SES's simple substitution for inline templates: ``{{{name}}}`` and ``{{name}}``."""

    def value(match: re.Match[str]) -> str:
        found = data.get(match[1] or match[2], "")
        return found if isinstance(found, str) else json.dumps(found)

    return _SES_PLACEHOLDER.sub(value, template)


def _ses_tags(tags: Any) -> dict[str, str]:
    """Name → value, or ValueError when SES would refuse them."""
    out = {}
    for tag in tags or []:
        if not (_SES_TAG.match(tag.get("Name", "")) and _SES_TAG.match(tag.get("Value", ""))):
            raise ValueError(
                "Invalid tag: names and values may only contain ASCII letters, numbers, "
                "underscores and dashes"
            )
        out[tag["Name"]] = tag["Value"]
    return out


def _ses_headers(headers: Any) -> dict[str, str]:
    out = {}
    for header in headers or []:
        name, value = header.get("Name", ""), header.get("Value", "")
        printable = name.isascii() and name.isprintable() and value.isascii()
        if not printable or ":" in name or not 0 < len(name) <= 126 or len(value) > 995:
            raise ValueError(f"Invalid header: {name[:40]!r}")
        out[name] = value
    return out


def _ses_id() -> str:
    return f"0100{secrets.token_hex(6)}-{secrets.token_hex(4)}-{secrets.token_hex(2)}-000000"


class SesApi(_Api):
    name = "ses"

    def route(self, method: str, path: str) -> Route | None:
        routes = {
            ("POST", "/v2/email/outbound-emails"): self.send_email,
            ("POST", "/v2/email/outbound-bulk-emails"): self.send_bulk,
            ("GET", "/v2/email/account"): self.account,
        }
        return routes.get((method, path))

    def error(self, status: int, message: str, kind: str | None = None) -> Reply:
        kind = kind or _SES_ERROR_TYPES.get(status, "ServiceException")
        return json_reply(status, {"message": message}, {"x-amzn-ErrorType": kind})

    def authorise(self, request: Request) -> Reply | None:
        problem = _ses_auth_problem(request)
        return None if problem is None else self.error(403, problem[1], problem[0])

    def _bad(self, message: str) -> Reply:
        self.ledger.count(self.name, "bad_requests")
        return self.error(400, message)

    def send_email(self, request: Request, behaviour: Behaviour) -> Reply:
        try:
            body = request.json()
            to = body["Destination"]["ToAddresses"]
            tags = _ses_tags(body.get("EmailTags"))
            subject, text, html, headers = self._content(body["Content"])
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            return self._bad(f"Invalid request: {exc}")
        if not valid_address(body.get("FromEmailAddress", "").rpartition("<")[2].rstrip(">")):
            return self._bad("Missing or invalid FromEmailAddress")
        if not 1 <= len(to) <= SES_MAX_BULK_ENTRIES or any(behaviour.rejects(a) for a in to):
            self.ledger.count(self.name, "refused", sum(1 for a in to if behaviour.rejects(a)))
            return self._bad("Illegal address")
        message_id = _header(headers, "message-id")
        self.ledger.add(
            [
                StubMessage("ses", address, subject, text, html, message_id, headers, tags)
                for address in to
            ]
        )
        return json_reply(200, {"MessageId": _ses_id()})

    @staticmethod
    def _content(content: dict[str, Any]) -> tuple[str, str, str, dict[str, str]]:
        if "Simple" in content:
            simple = content["Simple"]
            body = simple.get("Body", {})
            return (
                simple["Subject"]["Data"],
                body.get("Text", {}).get("Data", ""),
                body.get("Html", {}).get("Data", ""),
                _ses_headers(simple.get("Headers")),
            )
        raw = message_from_bytes(base64.b64decode(content["Raw"]["Data"]), policy=default_policy)
        assert isinstance(raw, EmailMessage)
        parts = [raw.get_body(("plain",)), raw.get_body(("html",))]
        text, html = (str(p.get_content()) if p is not None else "" for p in parts)
        headers = {k: str(v) for k, v in raw.items() if k.lower() != "content-type"}
        return str(raw.get("Subject", "")), text, html, headers

    def send_bulk(self, request: Request, behaviour: Behaviour) -> Reply:
        try:
            body = request.json()
            template = body["DefaultContent"]["Template"]
            entries = body["BulkEmailEntries"]
            defaults = json.loads(template.get("TemplateData") or "{}")
            default_tags = _ses_tags(body.get("DefaultEmailTags"))
            default_headers = _ses_headers(template.get("Headers"))
            for entry in entries:
                _ses_tags(entry.get("ReplacementTags"))
                _ses_headers(entry.get("ReplacementHeaders"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return self._bad(f"Invalid request: {exc}")
        if "TemplateContent" not in template:
            return self.error(404, f"Template {template.get('TemplateName')} does not exist.")
        if not valid_address(body.get("FromEmailAddress", "").rpartition("<")[2].rstrip(">")):
            return self._bad("Missing or invalid FromEmailAddress")
        if not 1 <= len(entries) <= SES_MAX_BULK_ENTRIES:
            return self._bad("BulkEmailEntries must hold between 1 and 50 entries")
        content = template["TemplateContent"]
        results, accepted = [], []
        for entry in entries:
            to = entry.get("Destination", {}).get("ToAddresses", [])
            replacement = entry.get("ReplacementEmailContent", {}).get("ReplacementTemplate", {})
            try:
                data = {
                    **defaults,
                    **json.loads(replacement.get("ReplacementTemplateData") or "{}"),
                }
            except ValueError:
                results.append(
                    {"Status": "INVALID_PARAMETER", "Error": "Invalid ReplacementTemplateData"}
                )
                continue
            if not to or any(behaviour.rejects(a) for a in to):
                self.ledger.count(self.name, "refused")
                results.append({"Status": "INVALID_PARAMETER", "Error": "Illegal address"})
                continue
            headers = {**default_headers, **_ses_headers(entry.get("ReplacementHeaders"))}
            tags = {**default_tags, **_ses_tags(entry.get("ReplacementTags"))}
            subject, text, html = (
                _ses_render(content.get(k, ""), data) for k in ("Subject", "Text", "Html")
            )
            message_id = _header(headers, "message-id")
            accepted += [
                StubMessage("ses", a, subject, text, html, message_id, headers, tags) for a in to
            ]
            results.append({"Status": "SUCCESS", "MessageId": _ses_id()})
        self.ledger.add(accepted)
        return json_reply(200, {"BulkEmailEntryResults": results})

    def account(self, request: Request, behaviour: Behaviour) -> Reply:
        rate = behaviour.rate_limit_per_s or 14.0
        quota = {"Max24HourSend": 1_000_000.0, "MaxSendRate": rate, "SentLast24Hours": 0.0}
        return json_reply(
            200,
            {
                "SendingEnabled": True,
                "ProductionAccessEnabled": True,
                "EnforcementStatus": "HEALTHY",
                "SendQuota": quota,
            },
        )


# -- the server ---------------------------------------------------------------------------------


class EspStub:
    """The three providers' behaviour and what they accepted; ``url`` serves all three."""

    def __init__(self, keep: int = KEEP_MESSAGES) -> None:
        self.sendgrid = Behaviour()
        self.mailgun = Behaviour()
        self.ses = Behaviour()
        self.ledger = Ledger(keep)
        self.url = ""
        self._apis: list[_Api] = [
            SendGridApi(self.ledger),
            MailgunApi(self.ledger),
            SesApi(self.ledger),
        ]
        self._buckets = {name: _Bucket() for name in PROVIDERS}
        self._bucket_lock = threading.Lock()

    def behaviour(self, provider: str) -> Behaviour:
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}: expected one of {PROVIDERS}")
        behaviour: Behaviour = getattr(self, provider)
        return behaviour

    def messages(self, provider: str | None = None, since: int = 0) -> list[StubMessage]:
        return self.ledger.messages(provider, since)

    def stats(self) -> dict[str, Any]:
        return self.ledger.stats()

    def reset(self) -> None:
        """Forget every message and count, and restore default behaviours."""
        for name in PROVIDERS:
            setattr(self, name, Behaviour())
        with self._bucket_lock:
            self._buckets = {name: _Bucket() for name in PROVIDERS}
        self.ledger.reset()

    def handle(self, request: Request) -> Reply | None:
        """The answer to one request, or None to hang up without one."""
        if request.path.startswith("/_stub/"):
            return self._control(request)
        found = next(
            ((api, r) for api in self._apis if (r := api.route(request.method, request.path))), None
        )
        if found is None:
            return json_reply(404, {"message": f"no route {request.method} {request.path}"})
        api, route = found
        behaviour = self.behaviour(api.name)
        self.ledger.count(api.name, "requests")
        if behaviour.latency_s:
            time.sleep(behaviour.latency_s)
        try:
            reply = self._answer(api, route, request, behaviour)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # a malformed body
            self.ledger.count(api.name, "bad_requests")
            reply = api.error(400, f"malformed request: {exc!r}")
        with self._bucket_lock:
            api.decorate(reply, self._buckets[api.name], behaviour)
        if behaviour.drop_after_read:
            self.ledger.count(api.name, "dropped")
            return None
        return reply

    def _answer(self, api: _Api, route: Route, request: Request, behaviour: Behaviour) -> Reply:
        if (status := behaviour.failing_status()) is not None:
            self.ledger.count(api.name, "failed")
            reply = api.error(status, "injected failure")
            if behaviour.fail_retry_after_s is not None:
                reply.headers["Retry-After"] = str(behaviour.fail_retry_after_s)
            return reply
        if (denied := api.authorise(request)) is not None:
            self.ledger.count(api.name, "unauthorised")
            return denied
        if behaviour.rate_limit_per_s:
            with self._bucket_lock:
                wait = self._buckets[api.name].wait_s(behaviour.rate_limit_per_s, time.monotonic())
            if wait > 0:
                self.ledger.count(api.name, "rate_limited")
                reply = api.error(429, "too many requests")
                reply.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                return reply
        return route(request, behaviour)

    def _control(self, request: Request) -> Reply:
        key = (request.method, request.path)
        try:
            if key == ("POST", "/_stub/behaviour"):
                values = request.json()
                behaviour = self.behaviour(values.pop("provider", ""))
                behaviour.update(values)
                current = asdict(behaviour)
                current["reject_addresses"] = sorted(behaviour.reject_addresses)
                return json_reply(200, current)
        except (ValueError, TypeError, AttributeError) as exc:
            return json_reply(400, {"message": str(exc)})
        if key == ("POST", "/_stub/reset"):
            self.reset()
            return json_reply(200, {"reset": True})
        if key == ("GET", "/_stub/stats"):
            return json_reply(200, self.stats())
        if key == ("GET", "/_stub/messages"):
            provider = (request.query.get("provider") or [""])[0] or None
            since = int((request.query.get("since") or ["0"])[0])
            found = self.messages(provider, since)
            last = found[-1].seq if found else since
            return json_reply(200, {"messages": [asdict(m) for m in found], "last": last})
        return json_reply(404, {"message": f"no control route {request.method} {request.path}"})


def _handler(stub: EspStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: benchmarks post thousands of requests
        # Headers and body are separate writes: with Nagle on, the body waits for the client's
        # delayed ACK (~40 ms a request).
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802
            self._serve()

        def do_POST(self) -> None:  # noqa: N802
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            request = Request(self.command, url.path, self.path, parse_qs(url.query), headers, body)
            reply = stub.handle(request)
            if reply is None:  # read it all, answer nothing: the client cannot know the outcome
                self.close_connection = True
                return
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

    return Handler


@contextmanager
def running_esp_stub(
    port: int = 0, *, host: str = "127.0.0.1", keep: int = KEEP_MESSAGES
) -> Iterator[EspStub]:
    """Serve the stub on a background thread; point ``sendgrid_base_url``, ``mailgun_base_url``
    and ``ses_endpoint_url`` at ``stub.url`` and use the ``STUB_*`` credentials."""
    stub = EspStub(keep)
    server = ThreadingHTTPServer((host, port), _handler(stub))
    stub.url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="esp-stub", daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


def serve(
    port: int = 8025,
    *,
    host: str = "127.0.0.1",
    keep: int = KEEP_MESSAGES,
    on_ready: Callable[[EspStub], None] | None = None,
) -> None:
    """Run the stub in the foreground until Ctrl-C (for ``tailor`` CLI runs)."""
    with running_esp_stub(port, host=host, keep=keep) as stub:
        if on_ready is not None:
            on_ready(stub)
        log.info("email provider stub listening on %s", stub.url)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            log.info("email provider stub stopped")
