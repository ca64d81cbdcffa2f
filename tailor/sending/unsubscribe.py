"""Unsubscribing, as every email carries it: a signed token per campaign and contact, the
footer's unsubscribe link, and the RFC 8058 one-click ``List-Unsubscribe`` headers.

``List-Unsubscribe`` names the one-click URL only. It used to name a ``mailto:`` address too, at
the sender's domain, which nothing read: a reader's client that chose it sent a request that was
never acted on. RFC 8058 and the mailbox providers' bulk-sender rules ask for the HTTPS URL with
``List-Unsubscribe-Post``; a mailto comes back only with something that processes it.

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
    *, public_url: str, secret: str, campaign_id: str, contact_id: int
) -> Unsubscribe:
    token = quote(unsubscribe_token(secret, campaign_id, contact_id))
    url = f"{public_url.rstrip('/')}/v1/unsubscribe/{token}"
    return Unsubscribe(
        url=url,
        headers={
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
