"""Amazon SES v2: ``SendEmail`` (simple and raw content), ``SendBulkEmail`` with inline
templates, ``GetAccount``, and SigV4 authentication checked by recomputing the signature with
botocore."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from tailor.devtools.esp_stub.api import Reply, Request, Route, _Api, _header, json_reply
from tailor.devtools.esp_stub.control import Behaviour, valid_address
from tailor.devtools.esp_stub.store import StubMessage

STUB_SES_ACCESS_KEY = "AKIATAILORSTUB000000"
STUB_SES_SECRET = "tailor-stub-secret-access-key"
SES_MAX_BULK_ENTRIES = 50
SES_MAX_CLOCK_SKEW_S = 15 * 60
_SES_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_SES_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^, ]+), ?"
    r"Signature=(?P<signature>[0-9a-f]+)"
)
_SES_PLACEHOLDER = re.compile(r"\{\{\{\s*([\w.-]+)\s*\}\}\}|\{\{\s*([\w.-]+)\s*\}\}")
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
