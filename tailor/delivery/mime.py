"""The RFC 5322 message for SMTP, from the parts an email is composed of.

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

# RFC 5322 allows 998 characters per line; long List-Unsubscribe values stay on one line, since
# folding them into RFC 2047 encoded words would break them for mail clients.
MAX_LINE = 998


class HeaderInjection(ValueError):
    pass


@dataclass(frozen=True)
class MailParts:
    """One email before MIME encoding: what an HTTP provider's API takes."""

    subject: str
    text: str
    html: str
    headers: dict[str, str]  # Message-ID, X-Tailor-Campaign, List-Unsubscribe*


def check_header_values(*values: str) -> None:
    """Refuse a header value that would start a header of its own."""
    for value in values:
        if "\r" in value or "\n" in value:
            raise HeaderInjection("line break in a header value")


def display_name(name: str) -> str:
    """A sender name as one line: a line break in a tenant's ``from_name`` is whitespace in the
    From header, never the start of a header of its own."""
    return " ".join(name.split())


def _header_value(value: str) -> str:
    check_header_values(value)
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=MAX_LINE).encode()


def _qp(text: str) -> bytes:
    body = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    return body.replace(b"\n", b"\r\n")


def render_message(
    parts: MailParts, *, from_name: str, from_email: str, to_email: str, sent_at: datetime
) -> bytes:
    """The RFC 5322 message for SMTP."""
    message_id = parts.headers["Message-ID"]
    boundary = "=_tailor_" + hashlib.sha1(message_id.encode()).hexdigest()[:24]
    headers = [
        ("From", formataddr((display_name(from_name), from_email), charset="utf-8")),
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
