from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from tailor.errors import NotFound
from tailor.models import Template, TemplateVersion


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
