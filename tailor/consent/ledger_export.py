"""The consent ledger exported for an auditor: one JSON document per tenant and period.

::

    {"format": "tailor-consent-ledger", "chain_version": 1, "tenant_id": "demo",
     "since": null, "until": "2026-12-01T00:00:00+00:00", "exported_at": "...",
     "rows": [{"contact_id": 7, "seq": 1, ..., "prev_hash": "000…", "row_hash": "9f2…"}, ...],
     "heads": {"7": {"seq": 3, "row_hash": "…"}, ...}}

Rows come contact by contact in chain order; ``heads`` is each contact's newest row in the
export. An export that starts at the beginning (no ``since``) holds whole chains, each from
``GENESIS``; one for a period holds the part of each chain recorded in it, whose first link
points outside it. Anyone can recompute the hashes (``tailor.consent.ledger``). Kept, an
export's heads later show whether the chains were cut or rewritten since
(``tailor consent verify --against``).

Rows carry ids and the evidence of each change, never an address: a contact erased since is
still accounted for by the same id.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tailor.consent.ledger import CHAIN_VERSION, Head, timestamp

FORMAT = "tailor-consent-ledger"
# What an exported row holds, in this order (the ledger's columns; ``id`` for cross-reference).
ROW_FIELDS = ("id", "tenant_id", "contact_id", "seq", "channel", "status", "source", "method",
              "wording_version", "recorded_by", "recorded_at", "prev_hash", "row_hash")  # fmt: skip


class NotAnExport(ValueError):
    """A file that is not a consent-ledger export Tailor can read."""


def _row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {name: row[name] for name in ROW_FIELDS}
    if isinstance(out["recorded_at"], datetime):
        out["recorded_at"] = timestamp(out["recorded_at"])
    return out


async def export_document(
    pages: AsyncIterator[list[dict[str, Any]]],
    *,
    tenant_id: str,
    since: datetime | None,
    until: datetime | None,
    exported_at: datetime,
) -> AsyncIterator[str]:
    """The export as text, a page of rows at a time (streamed to a file or a response)."""
    header = {
        "format": FORMAT,
        "chain_version": CHAIN_VERSION,
        "tenant_id": tenant_id,
        "since": timestamp(since) if since else None,
        "until": timestamp(until) if until else None,
        "exported_at": timestamp(exported_at),
    }
    yield json.dumps(header)[:-1] + ', "rows": ['
    heads: dict[int, Head] = {}
    first = True
    async for page in pages:
        rows = [_row(r) for r in page]
        for r in rows:
            heads[int(r["contact_id"])] = Head(int(r["seq"]), str(r["row_hash"]))
        text = ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
        yield ("\n" if first else ",\n") + text
        first = False
    yield "\n], " + json.dumps({"heads": _heads_json(heads)})[1:] + "\n"


def _heads_json(heads: Mapping[int, Head]) -> dict[str, dict[str, Any]]:
    return {str(c): {"seq": h.seq, "row_hash": h.row_hash} for c, h in sorted(heads.items())}


@dataclass(frozen=True)
class Export:
    tenant_id: str
    since: str | None
    until: str | None
    rows: list[dict[str, Any]]
    heads: dict[int, Head]


def read_export(path: Path) -> Export:
    """An export read back, or ``NotAnExport`` naming what is wrong with the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotAnExport(f"{path}: cannot be read as JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise NotAnExport(f"{path}: not a consent-ledger export (its format is not {FORMAT!r})")
    if data.get("chain_version") != CHAIN_VERSION:
        raise NotAnExport(
            f"{path}: chain version {data.get('chain_version')!r}; this Tailor checks "
            f"version {CHAIN_VERSION}"
        )
    try:
        heads = {int(c): Head(int(h["seq"]), str(h["row_hash"])) for c, h in data["heads"].items()}
        rows = list(data["rows"])
        for row in rows:
            missing = [name for name in ROW_FIELDS if name not in row]
            if missing:
                raise NotAnExport(f"{path}: a row lacks {', '.join(missing)}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, NotAnExport):
            raise
        raise NotAnExport(f"{path}: rows or heads are malformed ({exc!r})") from exc
    return Export(str(data.get("tenant_id")), data.get("since"), data.get("until"), rows, heads)
