"""Amazon SES v2 ``SendBulkEmail``: up to 50 personalised emails a request, signed with SigV4.

The request's inline template is nothing but placeholders (``{{{subject}}}``, ``{{{text}}}``,
``{{{html}}}``; triple braces, so SES inserts the values unescaped) and each entry's
``ReplacementTemplateData`` holds that recipient's values. ``ReplacementHeaders`` carry
Message-ID and List-Unsubscribe*, ``ReplacementTags`` the send id, ``DefaultEmailTags`` the campaign
and tenant (tag values may only hold ASCII letters, digits, ``_`` and ``-``).

SES answers each entry on its own (``BulkEmailEntryResults``, in order):

- ``SUCCESS`` → ACCEPTED with its ``MessageId``.
- ``INVALID_PARAMETER`` → REFUSED; suppressed when the error is about the address.
- ``MESSAGE_REJECTED`` (content, e.g. a virus) and ``FAILED`` → REFUSED, not suppressed.
- ``TRANSIENT_FAILURE``, throttling and quota, and every account or configuration state
  (suspended, paused, unverified domain, unknown configuration set, template or pool) → RETRY
  with ``provider_failed``: the recipient is fine and another provider may take it.

A whole-request 400 is read by its ``x-amzn-ErrorType``: account states (sending paused, limits,
suspension, unverified MAIL FROM) are RETRY with ``provider_failed``; anything else
(``BadRequestException``, ``MessageRejected``) means our request was malformed.

SES cannot answer a delivery lookup: the v2 API has no query for sent messages by tag (its
events go only to a configuration set's destinations: SNS, Firehose, EventBridge), so
``delivered`` returns None and an unclear send stays unclear.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from email.utils import formataddr
from typing import Any

import httpx
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from tailor.delivery.providers.base import BatchResult, OutgoingEmail, RecipientResult, Verdict
from tailor.delivery.providers.http import (
    ProviderClient,
    Unanswered,
    by_sender,
    merge,
    response_json,
    scrub,
    settle_all,
)

SERVICE = "ses"
MAX_TEMPLATE_DATA = 262_144  # characters of ReplacementTemplateData
TEMPLATE = {"Subject": "{{{subject}}}", "Text": "{{{text}}}", "Html": "{{{html}}}"}
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
KEY_SETTINGS = "TAILOR_SES_ACCESS_KEY_ID, TAILOR_SES_SECRET_ACCESS_KEY and TAILOR_SES_REGION"
TOO_BIG = "ses: email larger than the SES template data limit (256 KB)"

REFUSED_STATUSES = {"INVALID_PARAMETER", "MESSAGE_REJECTED", "FAILED"}
# 400s about the account rather than the request: another provider can take these recipients.
ACCOUNT_ERRORS = {
    "AccountSuspendedException",
    "LimitExceededException",
    "MailFromDomainNotVerifiedException",
    "SendingPausedException",
}


def default_endpoint(region: str) -> str:
    return f"https://email.{region}.amazonaws.com"


def tag_value(value: str) -> str:
    return _TAG_UNSAFE.sub("_", value)[:256] or "_"


def _template_data(email: OutgoingEmail) -> str:
    return json.dumps({"subject": email.subject, "text": email.text, "html": email.html})


def _entry(email: OutgoingEmail) -> dict[str, Any]:
    return {
        "Destination": {"ToAddresses": [email.to_email]},
        "ReplacementEmailContent": {
            "ReplacementTemplate": {"ReplacementTemplateData": _template_data(email)}
        },
        "ReplacementTags": [{"Name": "tailor_send_id", "Value": str(email.send_id)}],
        "ReplacementHeaders": [{"Name": k, "Value": v} for k, v in email.headers.items()],
    }


def bulk_body(emails: Sequence[OutgoingEmail]) -> dict[str, Any]:
    """One SendBulkEmail request for emails of one sender and campaign."""
    first = emails[0]
    return {
        "FromEmailAddress": formataddr((first.from_name, first.from_email)),
        "DefaultContent": {"Template": {"TemplateContent": TEMPLATE, "TemplateData": "{}"}},
        "DefaultEmailTags": [
            {"Name": "tailor_campaign", "Value": tag_value(first.campaign_id)},
            {"Name": "tailor_tenant", "Value": tag_value(first.tenant_id)},
        ],
        "BulkEmailEntries": [_entry(e) for e in emails],
    }


def entry_result(email: OutgoingEmail, entry: Any) -> tuple[RecipientResult, bool]:
    """One recipient's verdict from its ``BulkEmailEntryResult``, and whether it is the
    provider's (not the recipient's) failure."""
    entry = entry if isinstance(entry, dict) else {}
    status = str(entry.get("Status", ""))
    if status == "SUCCESS":
        return RecipientResult(email.send_id, Verdict.ACCEPTED, entry.get("MessageId")), False
    error = str(entry.get("Error") or "")
    detail = scrub(f"ses {status or 'no status'}: {error}")
    if status in REFUSED_STATUSES:
        suppress = status == "INVALID_PARAMETER" and "address" in error.lower()
        refused = RecipientResult(email.send_id, Verdict.REFUSED, detail=detail, suppress=suppress)
        return refused, False
    return RecipientResult(email.send_id, Verdict.RETRY, detail=detail), True


class SesProvider:
    """Amazon SES v2 with an IAM access key allowed ``ses:SendBulkEmail`` and ``ses:GetAccount``."""

    name = "ses"
    max_batch = 50

    def __init__(
        self,
        *,
        access_key_id: str,
        secret_access_key: str,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        credentials = Credentials(access_key_id, secret_access_key)
        self._signer = SigV4Auth(credentials, SERVICE, region)
        self._http = ProviderClient(
            self.name,
            endpoint_url or default_endpoint(region),
            timeout_s,
            key_setting=KEY_SETTINGS,
            url_setting="TAILOR_SES_ENDPOINT_URL and TAILOR_SES_REGION",
            transport=transport,
        )

    def _signed(self, method: str, path: str, body: bytes = b"") -> httpx.Request:
        """A request carrying exactly the bytes and headers botocore signed."""
        headers = {"Content-Type": "application/json"} if body else {}
        aws = AWSRequest(method=method, url=self._http.base_url + path, data=body, headers=headers)
        self._signer.add_auth(aws)
        return self._http.build(method, path, content=body, headers=dict(aws.headers.items()))

    async def send_batch(self, emails: Sequence[OutgoingEmail]) -> BatchResult:
        parts = []
        for group in by_sender(emails):
            fits: list[OutgoingEmail] = []
            too_big: list[OutgoingEmail] = []
            for email in group:
                small = len(_template_data(email)) <= MAX_TEMPLATE_DATA
                (fits if small else too_big).append(email)
            if too_big:  # SES would refuse the whole request for them
                parts.append(settle_all(too_big, Verdict.REFUSED, TOO_BIG))
            if fits:
                parts.append(await self._post(fits))
        return merge(emails, parts)

    async def _post(self, emails: list[OutgoingEmail]) -> BatchResult:
        body = json.dumps(bulk_body(emails)).encode()
        request = self._signed("POST", "/v2/email/outbound-bulk-emails", body)
        answer = await self._http.send(request)
        if isinstance(answer, Unanswered):
            return answer.result(emails)
        if answer.is_success:
            return self._entries(answer, emails)
        if (failed := self._http.failure(answer, emails)) is not None:
            return failed
        kind = answer.headers.get("x-amzn-errortype", "").split(":")[0]
        body_json = response_json(answer)
        message = str(body_json.get("message", "")) if isinstance(body_json, dict) else answer.text
        if kind in ACCOUNT_ERRORS:
            detail = scrub(f"ses {kind}: {message}")
            return settle_all(emails, Verdict.RETRY, detail, provider_failed=True)
        return self._http.malformed(answer, emails, f"{kind}: {message}")

    def _entries(self, response: httpx.Response, emails: list[OutgoingEmail]) -> BatchResult:
        body = response_json(response)
        entries = body.get("BulkEmailEntryResults") if isinstance(body, dict) else None
        if not isinstance(entries, list) or len(entries) != len(emails):
            # A 200 we cannot read: SES may have sent any of them.
            detail = "ses: unreadable SendBulkEmail answer"
            return settle_all(emails, Verdict.AMBIGUOUS, detail, provider_failed=True)
        judged = [entry_result(email, entry) for email, entry in zip(emails, entries, strict=True)]
        return BatchResult([r for r, _ in judged], provider_failed=any(f for _, f in judged))

    async def delivered(self, send_ids: Sequence[int]) -> None:
        return None  # no lookup by tag in SES v2 (see the module docstring)

    async def health(self) -> bool:
        return await self._http.ok(self._signed("GET", "/v2/email/account"))

    async def close(self) -> None:
        await self._http.close()
