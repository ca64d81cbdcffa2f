"""Who is calling: the tenant, role and identity an API key or token proved."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from tailor.models import Role


@dataclass(frozen=True)
class Principal:
    tenant_id: str | None  # None only for platform keys
    role: Role
    actor: str  # the key id, or the token's subject: what the audit log and ledgers record
    kind: Literal["key", "token", "cli"]
    key_id: str | None = None  # for last-use times and per-key rate limits
    last_used_at: datetime | None = None  # as stored before this request

    @property
    def rate_key(self) -> str:
        """What request rate limits count against: the key, or the token's subject."""
        return self.key_id or f"{self.kind}:{self.tenant_id}:{self.actor}"
