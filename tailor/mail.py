"""Builds the RFC 5322 message: text and HTML parts, CTA, the legal footer and headers."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from html import escape

from activities.executor import Personalised
from activities.guardrail import Compliance

# Long headers stay on one line (RFC 5322 allows 998 characters): folding would turn the
# List-Unsubscribe URLs into RFC 2047 encoded words, which mail clients do not follow.
POLICY = SMTP.clone(max_line_length=998)


def _html(content: Personalised, compliance: Compliance) -> str:
    paragraphs = "".join(
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
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(display_name=from_name, addr_spec=from_email)
    msg["To"] = to_email
    msg["Subject"] = content.subject
    msg["Date"] = format_datetime(sent_at)
    msg["Message-ID"] = message_id
    msg["X-Tailor-Campaign"] = campaign_id
    for name, value in compliance.headers.items():
        msg[name] = value
    text = f"{content.body}\n\n{content.cta_text}: {content.cta_url}\n\n-- \n{compliance.footer}\n"
    msg.set_content(text)
    msg.add_alternative(_html(content, compliance), subtype="html")
    return msg.as_bytes()
