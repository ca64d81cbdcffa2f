"""The consent ledger's export as the API documents it (``tailor.consent.ledger_export``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from api.schemas.base import Strict


class LedgerQuery(Strict):
    since: AwareDatetime | None = Field(None, description="Rows recorded at or after this time.")
    until: AwareDatetime | None = Field(None, description="Rows recorded before this time.")

    @model_validator(mode="after")
    def _period(self) -> LedgerQuery:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class LedgerRowPublic(BaseModel):
    id: int
    tenant_id: str
    contact_id: int
    seq: int = Field(description="The row's place in the contact's chain, from 1.")
    channel: str
    status: str
    source: str
    method: str
    wording_version: str
    recorded_by: str
    recorded_at: str = Field(description="UTC, ISO 8601 with microseconds, as hashed.")
    prev_hash: str = Field(description="The previous row's `row_hash`; 64 zeros for row 1.")
    row_hash: str = Field(description="SHA-256 of the row's canonical form (docs/compliance.md).")


class LedgerHeadPublic(BaseModel):
    seq: int
    row_hash: str


class LedgerExportPublic(BaseModel):
    format: Literal["tailor-consent-ledger"]
    chain_version: int
    tenant_id: str
    since: str | None
    until: str | None
    exported_at: str
    rows: list[LedgerRowPublic] = Field(description="Contact by contact, in chain order.")
    heads: dict[str, LedgerHeadPublic] = Field(
        description="Each contact's newest row in the export, by contact id: keep them to check "
        "later that no chain was cut or rewritten (`tailor consent verify --against`)."
    )


class LapsingQuery(Strict):
    within_days: int = Field(30, ge=0, le=730, description="Lapsing within this many days.")
    limit: int = Field(500, ge=1, le=5000)


class LapsingConsentPublic(BaseModel):
    contact_id: int
    method: str = Field(description="implied-purchase (2 years) or implied-inquiry (6 months).")
    granted_at: datetime
    lapses_at: datetime = Field(description="In the past: lapsed, sends to them already stop.")


class LapsingConsentList(BaseModel):
    data: list[LapsingConsentPublic]
    count: int
