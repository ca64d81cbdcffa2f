"""The guardrail: what every email must carry and must not claim, checked before it is composed.

CAN-SPAM: a postal address and a working unsubscribe in every message (the links and one-click
headers come from ``unsubscribe.py``), and an honest subject. Consent is not checked here: it is
screened in bulk before personalising (``consent.py``) and checked again, atomically, in the
claim right before a provider can accept the message (``tailor/delivery/claims.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tailor.personalise.rules import Personalised
from tailor.sending.unsubscribe import unsubscribe_links

MAX_SUBJECT = 150
# Subjects that pretend to be a reply or forward are deceptive under CAN-SPAM.
DECEPTIVE_SUBJECT = re.compile(r"^\s*(re|fw|fwd)\s*:", re.IGNORECASE)


class GuardrailViolation(ValueError):
    pass


@dataclass(frozen=True)
class Compliance:
    footer: str
    headers: dict[str, str]
    unsubscribe_url: str


class Guardrail:
    def __init__(self, *, public_url: str, secret: str) -> None:
        self._public_url = public_url
        self._secret = secret

    def compliance(
        self,
        *,
        campaign_id: str,
        contact_id: int,
        tenant_name: str,
        postal_address: str,
        disclaimer: str | None = None,
        contact: str = "",
    ) -> Compliance:
        """The footer and headers every email carries. ``contact``: a second way to reach the
        sender besides the postal address (CASL asks for one: a web address or an email)."""
        if not postal_address.strip():
            raise GuardrailViolation("tenant has no postal address (CAN-SPAM requires one)")
        links = unsubscribe_links(
            public_url=self._public_url, secret=self._secret, campaign_id=campaign_id,
            contact_id=contact_id,
        )  # fmt: skip
        footer = (
            f"You are receiving this because you subscribed to {tenant_name} emails.\n"
            f"Unsubscribe: {links.url}\n"
            f"{postal_address}" + (f"\nContact: {contact}" if contact else "")
        )
        if disclaimer:
            footer = f"{disclaimer}\n{footer}"
        return Compliance(footer=footer, headers=links.headers, unsubscribe_url=links.url)

    def check_content(self, content: Personalised) -> None:
        if not content.subject:
            raise GuardrailViolation("empty subject")
        if len(content.subject) > MAX_SUBJECT:
            raise GuardrailViolation(f"subject longer than {MAX_SUBJECT} characters")
        if DECEPTIVE_SUBJECT.match(content.subject):
            raise GuardrailViolation("subject pretends to be a reply or forward")
        if not content.cta_url.startswith(("https://", "mailto:")):
            raise GuardrailViolation("call-to-action link is neither https:// nor mailto:")
