"""What the audit log keeps of one call: who made it, on which route, about which ids, and how it
ended. Never a request body, an email address or a name: ids, field names, status codes.

The API records every mutating call on a non-public route (``api/audit.py``); this module says
what such an entry is made of and writes it in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from tailor.accounts.principal import Principal
from tailor.db import Database
from tailor.models import AuditEntry
from tailor.store.audit import append_entry

#: Methods that change something; only these are recorded.
MUTATING: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Who a call with no valid credentials is recorded as.
ANONYMOUS: Final = "anonymous"
# Bounds on what a caller can make us store: a hostile path cannot grow the log.
_MAX_TARGETS = 20
_MAX_VALUE = 200


class Outcome(StrEnum):
    OK = "ok"  # 2xx (and 3xx)
    REFUSED = "refused"  # 4xx: unauthenticated, forbidden, invalid, not found, conflict
    FAILED = "failed"  # 5xx: our fault, or a dependency's

    @classmethod
    def of(cls, status_code: int) -> Outcome:
        if status_code >= 500:
            return cls.FAILED
        if status_code >= 400:
            return cls.REFUSED
        return cls.OK


def target_ids(values: Mapping[str, Any]) -> dict[str, str]:
    """The ids among ``values`` (names ending in ``_id``) as text, as a path carries them,
    bounded in number and length. Anything else a path or handler offers (a token, say) is
    left out rather than risk PII."""
    ids: dict[str, str] = {}
    for name, value in values.items():
        if len(ids) == _MAX_TARGETS or not (name == "id" or name.endswith("_id")):
            continue
        if isinstance(value, bool) or not isinstance(value, int | str):
            continue
        ids[name[:_MAX_VALUE]] = str(value)[:_MAX_VALUE]
    return ids


def audit_entry(
    *,
    principal: Principal | None,
    method: str,
    route: str,
    targets: Mapping[str, Any],
    status_code: int,
    request_id: str,
    detail: Mapping[str, Any],
    at: datetime,
) -> AuditEntry:
    """The entry for one call; ``principal`` None: the caller proved no identity."""
    return AuditEntry(
        tenant_id=principal.tenant_id if principal is not None else None,
        actor=principal.actor if principal is not None else ANONYMOUS,
        actor_kind=principal.kind if principal is not None else ANONYMOUS,
        role=principal.role.value if principal is not None else "none",
        method=method,
        route=route[:200],
        targets=target_ids(targets),
        status_code=status_code,
        outcome=Outcome.of(status_code).value,
        request_id=request_id,
        detail=dict(detail),
        at=at,
    )


async def record(db: Database, entry: AuditEntry) -> None:
    """Append the entry in a transaction of its own, apart from the call's (which may have
    rolled back)."""
    async with db.write() as conn:
        await append_entry(conn, entry=entry)
