"""Where a click redirect may go: only to a link Tailor itself put in that email, found by its
index in the email's list of links, and only over http(s). A token can name an index, never a
URL, so the redirect cannot be pointed anywhere else (no open redirect)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

SCHEMES = frozenset({"http", "https"})


def target_for(links: Sequence[str], link_index: int) -> str | None:
    """The URL to redirect to, or None (the route answers 404): an index outside the email's
    links, or a link that is not a plain http(s) URL with a host."""
    if not 0 <= link_index < len(links):
        return None
    url = links[link_index]
    # Whitespace and control characters would be rewritten (or split a header) on the way
    # into ``Location``; a link with them is not one Tailor would have put in an email.
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        return None
    return url
