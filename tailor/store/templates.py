from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from tailor.errors import NotFound
from tailor.models import Template, TemplateVersion
from tailor.store.keyset import below


async def get_or_create_template(*, session: AsyncSession, tenant_id: str, name: str) -> Template:
    row = (
        await session.execute(
            select(Template).where(col(Template.tenant_id) == tenant_id, col(Template.name) == name)
        )
    ).scalar_one_or_none()
    if row is not None:
        return row
    template = Template(tenant_id=tenant_id, name=name)
    session.add(template)
    await session.flush()
    return template


async def get_template(*, session: AsyncSession, tenant_id: str, template_id: int) -> Template:
    template = await session.get(Template, template_id)
    if template is None or template.tenant_id != tenant_id:
        raise NotFound("template", template_id)
    return template


async def add_version(
    *,
    session: AsyncSession,
    template: Template,
    subject: str,
    preheader: str,
    body: str,
    cta_text: str,
    cta_url: str,
) -> TemplateVersion:
    """Append a version; versions are never edited, so a sent email can always be explained."""
    latest = (
        await session.execute(
            select(func.max(TemplateVersion.version)).where(
                col(TemplateVersion.template_id) == template.id
            )
        )
    ).scalar_one()
    version = TemplateVersion(
        template_id=template.id or 0,
        version=(latest or 0) + 1,
        subject=subject,
        preheader=preheader,
        body=body,
        cta_text=cta_text,
        cta_url=cta_url,
    )
    session.add(version)
    await session.flush()
    return version


async def list_versions(*, session: AsyncSession, template_id: int) -> list[TemplateVersion]:
    rows = await session.execute(
        select(TemplateVersion)
        .where(col(TemplateVersion.template_id) == template_id)
        .order_by(col(TemplateVersion.version))
    )
    return list(rows.scalars())


async def get_version(
    *, session: AsyncSession, tenant_id: str, version_id: int
) -> tuple[Template, TemplateVersion]:
    version = await session.get(TemplateVersion, version_id)
    if version is None:
        raise NotFound("template version", version_id)
    template = await session.get(Template, version.template_id)
    if template is None or template.tenant_id != tenant_id:
        raise NotFound("template version", version_id)
    return template, version


# --- The API's reads and writes ----------------------------------------------------------------


async def template_id_named(*, session: AsyncSession, tenant_id: str, name: str) -> int | None:
    """The id of the tenant's template of this name, if there is one."""
    template_id: int | None = (
        await session.execute(
            select(Template.id).where(  # type: ignore[call-overload]
                col(Template.tenant_id) == tenant_id, col(Template.name) == name
            )
        )
    ).scalar_one_or_none()
    return template_id


async def create_template(*, session: AsyncSession, tenant_id: str, name: str) -> Template:
    """A new template with no versions yet; the name must be free (unique per tenant)."""
    template = Template(tenant_id=tenant_id, name=name)
    session.add(template)
    await session.flush()
    return template


@dataclass(frozen=True)
class TemplateSummary:
    """A template as a list shows it: its newest version's id, not the versions' text."""

    id: int
    name: str
    created_at: datetime
    latest_version_id: int | None  # None: no version yet
    versions: int


async def list_templates(
    *, session: AsyncSession, tenant_id: str, after: int | None, limit: int
) -> list[TemplateSummary]:
    """A keyset page of the tenant's templates, newest first (``tailor.store.keyset``)."""
    page = (
        await session.execute(
            select(col(Template.id), col(Template.name), col(Template.created_at))
            .where(col(Template.tenant_id) == tenant_id, below(col(Template.id), after))
            .order_by(col(Template.id).desc())
            .limit(limit)
        )
    ).all()
    # Versions only append, so the highest version id is the newest version.
    versions = {
        template_id: (latest, count)
        for template_id, latest, count in await session.execute(
            select(col(TemplateVersion.template_id), func.max(TemplateVersion.id), func.count())
            .where(col(TemplateVersion.template_id).in_([row.id for row in page]))
            .group_by(col(TemplateVersion.template_id))
        )
    }
    return [
        TemplateSummary(ident or 0, name, created_at, *versions.get(ident or 0, (None, 0)))
        for ident, name, created_at in page
    ]
