"""Onboarding a shop: the tenant, its sender and postal address, and its first admin key."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parseaddr
from functools import cache
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from tailor.accounts.keys import IssuedKey, issue_key
from tailor.errors import InvalidInput
from tailor.models import Role, Tenant
from tailor.store.tenants import add_tenant, tenant_exists

# Characters that would let a value break out of an email header or a log line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\u2028\u2029]")


def single_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must be one line without control characters")
    return value


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def timezone_name(value: str) -> str:
    if value not in _zones():
        raise ValueError(f"{value[:64]!r} is not an IANA time zone (e.g. Europe/Amsterdam)")
    return value


def postal_text(value: str) -> str:
    """An address may span lines, but carry no other control characters."""
    if _CONTROL_BUT_NEWLINE.search(value):
        raise ValueError("must not contain control characters other than line breaks")
    return value


class TenantSpec(BaseModel):
    """What a shop gives to start: the CAN-SPAM postal address and who emails come from."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{1,63}$",
        description="Lowercase letters, digits and dashes; part of workflow ids, never shown to "
        "recipients.",
        examples=["northwind"],
    )
    name: str = Field(min_length=1, max_length=200, examples=["Northwind Outfitters"])
    postal_address: str = Field(min_length=5, max_length=500)
    from_name: str = Field(min_length=1, max_length=200, examples=["Northwind"])
    from_email: EmailStr = Field(examples=["hello@northwind.example.com"])
    website: str = Field("", max_length=300, pattern=r"^(https?://\S+)?$")
    timezone: str = Field("UTC", max_length=64)

    _one_line = field_validator("name", "from_name", "website")(single_line)
    _zone = field_validator("timezone")(timezone_name)
    _address = field_validator("postal_address")(postal_text)


def parse_sender(sender: str) -> tuple[str, str]:
    """``Northwind <hello@northwind.example.com>`` -> (name, email)."""
    name, email = parseaddr(sender)
    if not email or "@" not in email:
        raise InvalidInput("sender", "expected 'Name <email@domain>'")
    return name, email


class TenantExists(Exception):
    """A tenant id is taken."""


@dataclass(frozen=True)
class Onboarded:
    tenant: Tenant
    admin_key: IssuedKey


async def onboard_tenant(*, session: AsyncSession, spec: TenantSpec, created_by: str) -> Onboarded:
    """Create the tenant and its first admin key, in the caller's transaction (all or none)."""
    if await tenant_exists(session=session, tenant_id=spec.id):
        raise TenantExists(spec.id)
    tenant = await add_tenant(session=session, tenant=Tenant(**spec.model_dump()))
    key = await issue_key(
        session=session, tenant_id=tenant.id, role=Role.ADMIN, name="first admin key",
        created_by=created_by,
    )  # fmt: skip
    return Onboarded(tenant=tenant, admin_key=key)
