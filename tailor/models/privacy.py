"""Data subjects' rights: erasures asked for and done, and the erased addresses kept suppressed."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tailor.models.base import UTCDateTime, json_field, utcnow


class ErasureStatus(StrEnum):
    REQUESTED = "requested"  # recorded; the workflow has not finished it
    DONE = "done"


class Erasure(SQLModel, table=True):
    """One person's erasure (GDPR Art. 17): asked once, done by ``ErasureWorkflow``."""

    __table_args__ = (sa.UniqueConstraint("tenant_id", "contact_id", name="uq_erasure_contact"),)

    id: str = Field(primary_key=True, max_length=40)  # "era_" + 16 hex
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    contact_id: int = Field(foreign_key="contact.id")
    status: str = Field(default=ErasureStatus.REQUESTED.value, max_length=16)
    requested_by: str = Field(max_length=200, description="The key id or token subject.")
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # What was removed or blanked, table by table (counts only).
    counts: dict[str, Any] = json_field(dict)


class ErasedAddress(SQLModel, table=True):
    """An erased person's address as a salted hash: imported again, it stays suppressed."""

    __tablename__ = "erased_address"

    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, primary_key=True)
    address_hash: str = Field(max_length=64, primary_key=True)
    erased_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ErasureSalt(SQLModel, table=True):
    """Each tenant's salt for ``ErasedAddress`` hashes, made at its first erasure."""

    __tablename__ = "erasure_salt"

    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, primary_key=True)
    salt: str = Field(max_length=64)
