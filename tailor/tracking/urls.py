"""The tracked URLs of one email: each link Tailor puts in it becomes a click redirect naming its
index, in order (the originals are kept, as ``Send.links``, for the redirect to find), and the
open pixel names the send."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape, unescape

from tailor.tracking.tokens import sign_click, sign_open

_HREF = re.compile(r"""href=(["'])(https?://[^"']+)\1""", re.IGNORECASE)


@dataclass(frozen=True)
class TrackingConfig:
    """Where pixel and redirect URLs point (no trailing slash) and the secret that signs them."""

    base_url: str
    secret: str


@dataclass
class EmailLinks:
    """One email's tracked links, collected while it is composed."""

    config: TrackingConfig
    tenant_id: str
    key_version: int
    send_id: int
    links: list[str] = field(default_factory=list)

    def click(self, url: str) -> str:
        """The redirect URL standing for ``url`` (the next link of the email)."""
        token = sign_click(
            self.config.secret, self.tenant_id, self.key_version, self.send_id, len(self.links)
        )
        self.links.append(url)
        return f"{self.config.base_url}/t/c/{token}"

    def pixel(self) -> str:
        token = sign_open(self.config.secret, self.tenant_id, self.key_version, self.send_id)
        return f"{self.config.base_url}/t/o/{token}"

    def rewrite_html(self, html: str) -> str:
        """``html`` with each http(s) ``href`` replaced by its redirect, in order."""

        def tracked(match: re.Match[str]) -> str:
            quote = match.group(1)
            url = self.click(unescape(match.group(2)))
            return f"href={quote}{escape(url, quote=True)}{quote}"

        return _HREF.sub(tracked, html)
