"""The consent ledger as a chain an auditor can check.

Each contact's ledger rows form a chain: row ``seq`` carries the SHA-256 of its own content
(``row_hash``) and the ``row_hash`` of the row before it (``prev_hash``; the first row has
``GENESIS``). Editing a row breaks its hash; deleting or inserting one breaks the next row's link
and leaves a gap in ``seq``. What a chain alone cannot show is a contact's newest rows removed, or
a chain rewritten from some row on with fresh hashes; an earlier export's heads can
(``ChainCheck.expected``): each head it lists must still be in the ledger at the same place.

The hash is plain SHA-256 over a canonical JSON form, so anyone holding an export can check it
with no key and no Tailor (docs/compliance.md documents the form).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
# Part of every hashed form, so a later change of the form can be told from tampering.
CHAIN_VERSION = 1
# The fields a row's hash covers, in the order the documentation lists them.
HASHED_FIELDS = ("tenant_id", "contact_id", "seq", "channel", "status", "source", "method",
                 "wording_version", "recorded_by", "recorded_at", "prev_hash")  # fmt: skip


@dataclass(frozen=True)
class LedgerEntry:
    """A consent row to append: what changed for one contact, from where, by whom."""

    tenant_id: str
    contact_id: int
    status: str
    source: str
    method: str
    wording_version: str
    recorded_by: str
    recorded_at: datetime
    channel: str = "email"


@dataclass(frozen=True)
class Head:
    """The newest row of a contact's chain."""

    seq: int
    row_hash: str


def timestamp(value: datetime) -> str:
    """``recorded_at`` as hashed: UTC, microseconds, ISO 8601."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def row_hash(row: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of a row's canonical form: its ``HASHED_FIELDS`` and the chain version
    as a JSON object with sorted keys, no spaces, UTF-8."""
    form = {name: row[name] for name in HASHED_FIELDS}
    form["recorded_at"] = (
        timestamp(form["recorded_at"])
        if isinstance(form["recorded_at"], datetime)
        else str(form["recorded_at"])
    )
    form["v"] = CHAIN_VERSION
    canonical = json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain(entries: list[LedgerEntry], heads: Mapping[int, Head]) -> list[dict[str, Any]]:
    """The rows to insert for ``entries``, in order, each linked to the contact's head (or to
    the entry before it for the same contact)."""
    tips = dict(heads)
    rows = []
    for entry in entries:
        tip = tips.get(entry.contact_id)
        row: dict[str, Any] = {
            "tenant_id": entry.tenant_id,
            "contact_id": entry.contact_id,
            "channel": entry.channel,
            "status": entry.status,
            "source": entry.source[:100],
            "method": entry.method[:100],
            "wording_version": entry.wording_version[:100],
            "recorded_by": entry.recorded_by[:200],
            "recorded_at": entry.recorded_at,
            "seq": tip.seq + 1 if tip else 1,
            "prev_hash": tip.row_hash if tip else GENESIS,
        }
        row["row_hash"] = row_hash(row)
        tips[entry.contact_id] = Head(row["seq"], row["row_hash"])
        rows.append(row)
    return rows


@dataclass(frozen=True)
class ChainProblem:
    contact_id: int
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"contact {self.contact_id}, row {self.seq}: {self.problem}"


@dataclass
class ChainCheck:
    """Checks rows fed in order of contact, then ``seq``. ``anchored`` (a whole ledger): each
    chain must start at row 1 from ``GENESIS``; unanchored (a period's export), a chain may
    start anywhere and its first link is taken as given. ``expected``: the heads of an earlier
    export, each of which must be found again, unchanged (``finish`` reports those that were
    not)."""

    anchored: bool = True
    expected: Mapping[int, Head] = field(default_factory=dict)
    rows: int = 0
    problems: list[ChainProblem] = field(default_factory=list)
    heads: dict[int, Head] = field(default_factory=dict)
    _found: set[int] = field(default_factory=set)

    def add(self, row: Mapping[str, Any]) -> None:
        self.rows += 1
        contact_id, seq = int(row["contact_id"]), int(row["seq"])
        tip = self.heads.get(contact_id)
        if tip is not None and seq <= tip.seq:
            self._problem(contact_id, seq, f"out of order after row {tip.seq}")
            return
        if row_hash(row) != row["row_hash"]:
            self._problem(contact_id, seq, "its content does not match its hash (edited)")
        if tip is None:
            if self.anchored and (seq != 1 or row["prev_hash"] != GENESIS):
                self._problem(contact_id, seq, "the rows before it are missing")
        elif seq == tip.seq + 2:
            self._problem(contact_id, seq, f"row {tip.seq + 1} is missing")
        elif seq != tip.seq + 1:
            self._problem(contact_id, seq, f"rows {tip.seq + 1} to {seq - 1} are missing")
        elif row["prev_hash"] != tip.row_hash:
            self._problem(contact_id, seq, f"does not follow row {tip.seq} (inserted or edited)")
        earlier = self.expected.get(contact_id)
        if earlier is not None and earlier.seq == seq:
            self._found.add(contact_id)
            if earlier.row_hash != row["row_hash"]:
                self._problem(contact_id, seq, "differs from the earlier export (rewritten)")
        self.heads[contact_id] = Head(seq, str(row["row_hash"]))

    def finish(self) -> list[ChainProblem]:
        """After the last row: the problems, with the earlier export's heads never found."""
        for contact_id, head in sorted(self.expected.items()):
            if contact_id not in self._found:
                self._problem(contact_id, head.seq, "was in the earlier export and is gone")
        self._found.update(self.expected)
        return self.problems

    def _problem(self, contact_id: int, seq: int, problem: str) -> None:
        self.problems.append(ChainProblem(contact_id, seq, problem))

    @property
    def contacts(self) -> int:
        return len(self.heads)
