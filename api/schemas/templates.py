"""Templates and their immutable versions, and the tenant's fallback version."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas.base import OneLine, RowIdField, Strict


class TemplateVersionIn(Strict):
    # One-line parts end up in headers (subject) or a single line of the email: a line break
    # there is refused, never passed on (CRLF header injection).
    subject: OneLine = Field(min_length=1, max_length=300)
    preheader: OneLine = Field("", max_length=300)
    body: str = Field(min_length=1, max_length=100_000)
    cta_text: OneLine = Field(min_length=1, max_length=100)
    cta_url: OneLine = Field(min_length=1, max_length=500)

    @field_validator("cta_url")
    @classmethod
    def _https_or_mailto(cls, value: str) -> str:
        if "{{" not in value and not value.startswith(("https://", "mailto:")):
            raise ValueError("must start with https:// or mailto: (or be a {{ expression }})")
        return value


class DefaultTemplate(Strict):
    template_version_id: RowIdField | None = Field(
        description="A version of one of your templates; null removes the default."
    )


class TemplateIn(TemplateVersionIn):
    name: OneLine = Field(min_length=1, max_length=200)


class TemplateVersionPublic(BaseModel):
    id: int
    version: int
    subject: str
    preheader: str
    body: str
    cta_text: str
    cta_url: str
    created_at: datetime


class TemplatePublic(BaseModel):
    id: int
    name: str
    versions: list[TemplateVersionPublic]


class TemplateListItem(BaseModel):
    """A template in ``GET /v1/templates``: ``GET /v1/templates/{id}`` has its versions."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    created_at: datetime
    latest_version_id: int | None = Field(description="Its newest version; null: none yet.")
    versions: int
