"""Builds the RFC 5322 message: text and HTML parts, CTA, the legal footer and headers.

Written out directly rather than through ``email.message.EmailMessage``: the stdlib builder
costs more CPU than everything else in a send (see docs/architecture.md, "Throughput"), and
our shape is fixed — multipart/alternative with two quoted-printable UTF-8 parts.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr
from html import escape

from tailor.personalise.rules import Personalised
from tailor.sending.guardrail import Compliance

# RFC 5322 allows 998 characters per line; long List-Unsubscribe values stay on one line, since
# folding them into RFC 2047 encoded words would break them for mail clients.
MAX_LINE = 998


class HeaderInjection(ValueError):
    pass


def _header_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderInjection("line break in a header value")
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=MAX_LINE).encode()


def _qp(text: str) -> bytes:
    body = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    return body.replace(b"\n", b"\r\n")


def _html(content: Personalised, compliance: Compliance) -> str:
    paragraphs = content.body_html or "".join(
        f"<p>{escape(p).replace(chr(10), '<br>')}</p>"
        for p in content.body.split("\n\n")
        if p.strip()
    )
    footer = escape(compliance.footer).replace("\n", "<br>")
    return (
        "<!doctype html><html><body>"
        f'<div style="display:none">{escape(content.preheader)}</div>'
        f"{paragraphs}"
        f'<p><a href="{escape(content.cta_url, quote=True)}" '
        'style="background:#1a73e8;color:#fff;padding:10px 18px;text-decoration:none">'
        f"{escape(content.cta_text)}</a></p>"
        f'<hr><p style="font-size:12px;color:#666">{footer}</p>'
        "</body></html>"
    )


@dataclass(frozen=True)
class MailParts:
    """One email before MIME encoding: what an HTTP provider's API takes."""

    subject: str
    text: str
    html: str
    headers: dict[str, str]  # Message-ID, X-Tailor-Campaign, List-Unsubscribe*


def mail_parts(
    *,
    content: Personalised,
    compliance: Compliance,
    message_id: str,
    campaign_id: str,
) -> MailParts:
    headers = {"Message-ID": message_id, "X-Tailor-Campaign": campaign_id, **compliance.headers}
    for value in (content.subject, *headers.values()):
        if "\r" in value or "\n" in value:
            raise HeaderInjection("line break in a header value")
    text = f"{content.body}\n\n{content.cta_text}: {content.cta_url}\n\n-- \n{compliance.footer}\n"
    return MailParts(content.subject, text, _html(content, compliance), headers)


def build_message(
    *,
    content: Personalised,
    compliance: Compliance,
    from_name: str,
    from_email: str,
    to_email: str,
    message_id: str,
    campaign_id: str,
    sent_at: datetime,
) -> bytes:
    parts = mail_parts(
        content=content, compliance=compliance, message_id=message_id, campaign_id=campaign_id
    )
    return render_message(
        parts, from_name=from_name, from_email=from_email, to_email=to_email, sent_at=sent_at
    )


def render_message(
    parts: MailParts, *, from_name: str, from_email: str, to_email: str, sent_at: datetime
) -> bytes:
    """The RFC 5322 message for SMTP."""
    message_id = parts.headers["Message-ID"]
    boundary = "=_tailor_" + hashlib.sha1(message_id.encode()).hexdigest()[:24]
    headers = [
        ("From", formataddr((from_name, from_email), charset="utf-8")),
        ("To", to_email),
        ("Subject", parts.subject),
        ("Date", format_datetime(sent_at)),
        ("Message-ID", message_id),
        ("MIME-Version", "1.0"),
        *((k, v) for k, v in parts.headers.items() if k != "Message-ID"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = "".join(f"{name}: {_header_value(value)}\r\n" for name, value in headers)
    part_head = (
        "Content-Type: text/{kind}; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    return b"".join(
        [
            head.encode("ascii"),
            b"\r\n",
            f"--{boundary}\r\n".encode(),
            part_head.format(kind="plain").encode(),
            _qp(parts.text),
            f"\r\n--{boundary}\r\n".encode(),
            part_head.format(kind="html").encode(),
            _qp(parts.html),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
