"""The message builder produces mail that standard parsers read back exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import pytest

from tailor.delivery.mime import HeaderInjection
from tailor.personalise.rules import Personalised
from tailor.sending.compose import build_message
from tailor.sending.guardrail import Guardrail


def _build(subject: str = "Café picks for Zoë ☕", from_name: str = "Nørdwind") -> bytes:
    content = Personalised(
        subject=subject,
        preheader="Fresh picks",
        body="Hi Zoë,\n\n.a line starting with a dot\nand <b>markup</b> & more\n" + "x" * 300,
        cta_text="Shop now",
        cta_url="https://shop.example.com/c/kitchen?utm=a&b=c",
    )
    compliance = Guardrail(public_url="https://t.example.com", secret="s").compliance(
        campaign_id="cmp_1",
        contact_id=7,
        tenant_name="Northwind",
        postal_address="1 Main St, Springfield",
    )
    return build_message(
        content=content,
        compliance=compliance,
        from_name=from_name,
        from_email="hello@northwind.example.com",
        to_email="zoe@example.com",
        message_id="<cmp_1.7@northwind.example.com>",
        campaign_id="cmp_1",
        sent_at=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
    )


def test_round_trips_through_the_standard_parser() -> None:
    raw = _build()
    message = message_from_bytes(raw, _class=EmailMessage, policy=default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "Café picks for Zoë ☕"
    assert message["From"].addresses[0].display_name == "Nørdwind"
    assert message["Message-ID"] == "<cmp_1.7@northwind.example.com>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"].startswith("<https://t.example.com/v1/unsubscribe/cmp_1.7.")
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    plain = text.get_content()
    assert ".a line starting with a dot" in plain and "x" * 300 in plain
    assert "1 Main St, Springfield" in plain
    assert "&lt;b&gt;markup&lt;/b&gt; &amp; more" in html.get_content()
    assert 'href="https://shop.example.com/c/kitchen?utm=a&amp;b=c"' in html.get_content()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_line_breaks_in_headers_are_refused() -> None:
    with pytest.raises(HeaderInjection):
        _build(subject="Hello\r\nBcc: victim@example.com")
