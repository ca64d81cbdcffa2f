from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from api.audit import audit_target
from api.deps import SessionDep, TenantDep
from api.openapi import problems
from api.paging import Cursor, Limit, after_id, id_cursor, page
from api.schemas.base import Page, RowId
from api.schemas.templates import (
    DefaultTemplate,
    TemplateIn,
    TemplateListItem,
    TemplatePublic,
    TemplateVersionIn,
    TemplateVersionPublic,
)
from tailor.errors import InvalidInput, NotFound
from tailor.models import Template
from tailor.personalise.sandbox import TemplateSandbox, TemplateSyntaxError, unsafe_reference
from tailor.store.templates import (
    add_version,
    create_template,
    get_template,
    get_version,
    list_templates,
    list_versions,
    template_id_named,
)
from tailor.store.tenants import set_default_template_version

router = APIRouter(prefix="/v1/templates", tags=["templates"])
_env = TemplateSandbox()
PARTS = ("subject", "preheader", "body", "cta_text", "cta_url")


def _check(body: TemplateVersionIn) -> dict[str, str]:
    parts = {part: getattr(body, part) for part in PARTS}
    for part, source in parts.items():
        try:
            unsafe = unsafe_reference(_env, source)
        except TemplateSyntaxError as exc:
            raise InvalidInput(
                part, f"template syntax error on line {exc.lineno}: {exc.message}"
            ) from exc
        if unsafe is not None:
            raise InvalidInput(part, unsafe)
    return parts


async def _public(session: SessionDep, template: Template) -> TemplatePublic:
    versions = await list_versions(session=session, template_id=template.id or 0)
    return TemplatePublic(
        id=template.id or 0,
        name=template.name,
        versions=[TemplateVersionPublic.model_validate(v, from_attributes=True) for v in versions],
    )


@router.get("", response_model=Page[TemplateListItem])
async def list_all(
    session: SessionDep, tenant: TenantDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[TemplateListItem]:
    """The tenant's templates, newest first, each with its newest version's id."""
    rows = await list_templates(session=session, tenant_id=tenant.id, after=after_id(cursor),
                                limit=limit + 1)  # fmt: skip
    return page(rows, limit=limit, item=TemplateListItem.model_validate,
                cursor=lambda t: id_cursor(t.id))  # fmt: skip


@router.post("", response_model=TemplatePublic, status_code=201, responses=problems(409))
async def create(
    body: TemplateIn, request: Request, session: SessionDep, tenant: TenantDep
) -> TemplatePublic:
    """Create a template with its first version. Versions are immutable once created."""
    parts = _check(body)
    exists = await template_id_named(session=session, tenant_id=tenant.id, name=body.name)
    if exists is not None:
        raise HTTPException(
            409,
            f"template {body.name!r} exists (id {exists}); POST /v1/templates/{exists}/versions",
        )
    template = await create_template(session=session, tenant_id=tenant.id, name=body.name)
    version = await add_version(session=session, template=template, **parts)
    audit_target(request, template_id=template.id or 0, template_version_id=version.id or 0)
    return await _public(session, template)


@router.get("/default", response_model=DefaultTemplate)
async def read_default(tenant: TenantDep) -> DefaultTemplate:
    """The template version a recipient gets when a campaign's template cannot render for them."""
    return DefaultTemplate(template_version_id=tenant.default_template_version_id)


@router.put("/default", response_model=DefaultTemplate)
async def set_default(
    body: DefaultTemplate, session: SessionDep, tenant: TenantDep
) -> DefaultTemplate:
    if body.template_version_id is not None:
        try:
            await get_version(
                session=session, tenant_id=tenant.id, version_id=body.template_version_id
            )
        except NotFound as exc:
            raise InvalidInput("template_version_id", str(exc)) from exc
    await set_default_template_version(
        session=session, tenant=tenant, template_version_id=body.template_version_id
    )
    return body


@router.post("/{template_id}/versions", response_model=TemplateVersionPublic, status_code=201)
async def create_version(
    template_id: RowId,
    body: TemplateVersionIn,
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
) -> TemplateVersionPublic:
    template = await get_template(session=session, tenant_id=tenant.id, template_id=template_id)
    version = await add_version(session=session, template=template, **_check(body))
    audit_target(request, template_version_id=version.id or 0)
    return TemplateVersionPublic.model_validate(version, from_attributes=True)


@router.get("/{template_id}", response_model=TemplatePublic)
async def read(template_id: RowId, session: SessionDep, tenant: TenantDep) -> TemplatePublic:
    template = await get_template(session=session, tenant_id=tenant.id, template_id=template_id)
    return await _public(session, template)
