"""HTML for words Tailor did not write itself (an LLM's, a reviewer's), cut to an allow-list.

Generated bodies may use light formatting. Everything else is removed by nh3: scripts, styles,
images, event handlers, and every link — links come from the system alone (the call to action,
unsubscribe), never from content. The plain-text part is derived from the same cleaned HTML, so
both parts say the same thing.
"""

from __future__ import annotations

import html
import re

import nh3

ALLOWED_TAGS = {"p", "br", "strong", "em", "b", "i", "ul", "ol", "li"}
# Only these schemes would survive if links were ever allowed; today <a> is not allowed at all.
URL_SCHEMES = {"https", "mailto"}
_BLOCK_END = re.compile(r"</p>|<br\s*/?>|</li>", re.IGNORECASE)
_BLOCK = re.compile(r"<(p|ul|ol)\b", re.IGNORECASE)


def clean(body: str) -> str:
    return nh3.clean(
        body,
        tags=ALLOWED_TAGS,
        attributes={},
        url_schemes=URL_SCHEMES,
        link_rel=None,
        strip_comments=True,
    )


def body_html(body: str) -> str:
    """Allow-listed HTML. Blocks of plain text (split on blank lines) become paragraphs with
    line breaks; blocks that already are markup stay as they are."""
    blocks = [b.strip() for b in clean(body).split("\n\n") if b.strip()]
    return "".join(b if _BLOCK.match(b) else f"<p>{b.replace(chr(10), '<br>')}</p>" for b in blocks)


def body_text(body: str) -> str:
    """The plain-text twin of :func:`body_html`: tags out, entities decoded."""
    marked = _BLOCK_END.sub(lambda m: "\n\n" if m.group(0).lower() == "</p>" else "\n",
                            clean(body))  # fmt: skip
    text = html.unescape(nh3.clean(marked, tags=set()))
    return re.sub(r"\n{3,}", "\n\n", text).strip()
