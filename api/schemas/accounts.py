"""API keys and onboarding: a key's secret appears in exactly one response, its creation's."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from api.schemas.base import Strict
from tailor.accounts.onboarding import TenantSpec, single_line

TenantRole = Literal["admin", "marketer", "reviewer", "analyst", "ingest"]


class KeyIn(Strict):
    name: str = Field(min_length=1, max_length=100, examples=["Segment production"])
    role: TenantRole = Field(examples=["ingest"])

    _one_line = field_validator("name")(single_line)


class KeyPublic(BaseModel):
    id: str
    name: str
    role: str
    prefix: str = Field(description="The start of the key (`tlr_<prefix>_...`), to recognise it.")
    created_by: str
    created_at: datetime
    last_used_at: datetime | None = Field(description="To the minute.")
    revoked_at: datetime | None


class KeyIssued(KeyPublic):
    secret: str = Field(
        description="The key itself. Shown only in this response: store it now; Tailor keeps "
        "only its hash."
    )


class KeysPublic(BaseModel):
    items: list[KeyPublic]


class TenantIn(TenantSpec):
    """A new shop (platform keys only)."""


class TenantPublic(BaseModel):
    id: str
    name: str
    from_name: str
    from_email: str
    postal_address: str
    website: str
    timezone: str
    created_at: datetime


class TenantOnboarded(BaseModel):
    tenant: TenantPublic
    admin_key: KeyIssued
