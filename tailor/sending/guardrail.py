"""The guardrail: what every email must carry and must not claim, checked before delivery.

Consent is checked here in bulk and again, atomically, in the delivery step right before the
provider can accept the message (``tailor.store.sends.try_dispatch``): one place, impossible to
skip. CAN-SPAM: a postal address and a working unsubscribe in every message, RFC 8058 one-click
headers, and an honest subject.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote

from tailor.personalise.rules import Personalised

MAX_SUBJECT = 150
# Subjects that pretend to be a reply or forward are deceptive under CAN-SPAM.
DECEPTIVE_SUBJECT = re.compile(r"^\s*(re|fw|fwd)\s*:", re.IGNORECASE)


class GuardrailViolation(ValueError):
    pass


def unsubscribe_token(secret: str, campaign_id: str, contact_id: int) -> str:
    mac = hmac.new(secret.encode(), f"{campaign_id}:{contact_id}".encode(), hashlib.sha256)
    return f"{campaign_id}.{contact_id}.{mac.hexdigest()[:32]}"


def verify_unsubscribe_token(secret: str, token: str) -> tuple[str, int] | None:
    try:
        campaign_id, contact_str, _ = token.rsplit(".", 2)
        contact_id = int(contact_str)
    except ValueError:
        return None
    expected = unsubscribe_token(secret, campaign_id, contact_id)
    return (campaign_id, contact_id) if hmac.compare_digest(expected, token) else None


@dataclass(frozen=True)
class Compliance:
    footer: str
    headers: dict[str, str]
    unsubscribe_url: str


class Guardrail:
    def __init__(self, *, public_url: str, secret: str) -> None:
        self._public_url = public_url.rstrip("/")
        self._secret = secret

    def compliance(
        self,
        *,
        campaign_id: str,
        contact_id: int,
        tenant_name: str,
        postal_address: str,
        unsubscribe_mailbox: str,
        disclaimer: str | None = None,
    ) -> Compliance:
        if not postal_address.strip():
            raise GuardrailViolation("tenant has no postal address (CAN-SPAM requires one)")
        token = unsubscribe_token(self._secret, campaign_id, contact_id)
        url = f"{self._public_url}/v1/unsubscribe/{quote(token)}"
        mailto = f"mailto:{unsubscribe_mailbox}?subject=unsubscribe%20{quote(token)}"
        footer = (
            f"You are receiving this because you subscribed to {tenant_name} emails.\n"
            f"Unsubscribe: {url}\n"
            f"{postal_address}"
        )
        if disclaimer:
            footer = f"{disclaimer}\n{footer}"
        headers = {
            "List-Unsubscribe": f"<{url}>, <{mailto}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        return Compliance(footer=footer, headers=headers, unsubscribe_url=url)

    def check_content(self, content: Personalised) -> None:
        if not content.subject:
            raise GuardrailViolation("empty subject")
        if len(content.subject) > MAX_SUBJECT:
            raise GuardrailViolation(f"subject longer than {MAX_SUBJECT} characters")
        if DECEPTIVE_SUBJECT.match(content.subject):
            raise GuardrailViolation("subject pretends to be a reply or forward")
        if not content.cta_url.startswith(("https://", "mailto:")):
            raise GuardrailViolation("call-to-action link is neither https:// nor mailto:")
