"""Accounts: API keys with roles, the append-only audit log, and remembered idempotent creates."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tailor.models.base import UTCDateTime, utcnow


class Role(StrEnum):
    """What a key may do. ``platform`` keys belong to no tenant and only onboard tenants."""

    ADMIN = "admin"  # keys, settings, catalog, the audit log, and all a marketer may do
    MARKETER = "marketer"  # contacts, templates, campaigns, journeys, A/B tests
    REVIEWER = "reviewer"  # the review queue and template approval
    ANALYST = "analyst"  # reads only
    INGEST = "ingest"  # Segment-style events only
    PLATFORM = "platform"  # creates tenants and their first admin key


class ApiKey(SQLModel, table=True):
    """A key's secret is shown once; only its SHA-256 is kept, found again by its prefix."""

    __tablename__ = "api_key"

    id: str = Field(primary_key=True, max_length=32)
    # None only for platform keys.
    tenant_id: str | None = Field(default=None, foreign_key="tenant.id", max_length=64, index=True)
    name: str = Field(max_length=100)
    role: str = Field(max_length=16)
    prefix: str = Field(max_length=32, unique=True)
    secret_sha256: str = Field(max_length=64)
    created_by: str = Field(max_length=200, description="Key id or token subject, or 'cli'.")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class AuditEntry(SQLModel, table=True):
    """One row per mutating call or account change. Append-only: triggers refuse UPDATE and
    DELETE (migration 0008). Never holds a request body: ids, names of fields, outcomes."""

    __tablename__ = "audit_entry"
    __table_args__ = (sa.Index("ix_audit_entry_tenant_id_id", "tenant_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str | None = Field(default=None, max_length=64)
    actor: str = Field(max_length=200, description="Key id, or the token's subject.")
    actor_kind: str = Field(max_length=16, description="key, token or cli")
    role: str = Field(max_length=16)
    method: str = Field(max_length=8)
    route: str = Field(max_length=200, description="The route's template, e.g. /v1/contacts/{id}")
    targets: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON, nullable=False)
    status_code: int
    outcome: str = Field(max_length=16, description="ok, refused or failed")
    request_id: str = Field(max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON, nullable=False)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)


class IdempotentRequest(SQLModel, table=True):
    """The first response to a create sent with an ``Idempotency-Key``, replayed for 24 h."""

    __tablename__ = "idempotent_request"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "idempotency_key", "route", name="uq_idempotent_request"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64)
    idempotency_key: str = Field(max_length=200)
    route: str = Field(max_length=200)
    body_sha256: str = Field(max_length=64)
    # None while the first request is still being answered.
    status_code: int | None = None
    response: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True
    )
