"""Unsubscribing, as every email carries it: a signed token per campaign and contact, the
footer's unsubscribe link, and the RFC 8058 one-click ``List-Unsubscribe`` headers.

The API's ``/v1/unsubscribe/{token}`` verifies the token (``api/routes/unsubscribe.py``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote


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
class Unsubscribe:
    url: str  # the one-click page (GET shows it, POST unsubscribes)
    headers: dict[str, str]  # List-Unsubscribe and List-Unsubscribe-Post


def unsubscribe_links(
    *, public_url: str, secret: str, campaign_id: str, contact_id: int, mailbox: str
) -> Unsubscribe:
    token = quote(unsubscribe_token(secret, campaign_id, contact_id))
    url = f"{public_url.rstrip('/')}/v1/unsubscribe/{token}"
    mailto = f"mailto:{mailbox}?subject=unsubscribe%20{token}"
    return Unsubscribe(
        url=url,
        headers={
            "List-Unsubscribe": f"<{url}>, <{mailto}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
