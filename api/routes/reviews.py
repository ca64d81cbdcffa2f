"""The human review queue: list flagged LLM content, approve it (as written or edited) or
reject it. The decision is committed first, then the waiting campaign is signalled."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from api.deps import CallerDep, DatabaseDep, GatewayDep, SessionDep, TenantDep
from api.openapi import problems
from api.paging import Cursor, Limit, after_id, id_cursor, page
from api.schemas.base import TEXT_ID_PATTERN, Page, RowId
from api.schemas.reviews import ReviewApproval, ReviewDecided, ReviewPublic, ReviewRejection
from tailor.accounts.notes import with_note
from tailor.errors import InvalidInput
from tailor.models import ReviewItem, ReviewStatus, Tenant, utcnow
from tailor.personalise.evaluator import check_edit
from tailor.personalise.pii import PiiScanner
from tailor.personalise.prompts import GeneratedEmail, ProductFact
from tailor.personalise.rules import Catalog
from tailor.store.catalog import products_of
from tailor.store.reviews import (
    decide,
    get_review,
    held_counts,
    tenant_reviews,
)

router = APIRouter(prefix="/v1/reviews", tags=["reviews"])
_NOTE_LIMIT = 1000  # the review_item.note column


def _note(body: ReviewRejection) -> str | None:
    """The reviewer's note, with a stated (deprecated, unverified) reviewer name labelled."""
    return with_note(body.note or "", body.reviewer, limit=_NOTE_LIMIT) or None


def _public(item: ReviewItem, held: int) -> ReviewPublic:
    return ReviewPublic.model_validate({**item.model_dump(), "held_recipients": held})


@router.get("", response_model=Page[ReviewPublic])
async def list_reviews(
    session: SessionDep,
    tenant: TenantDep,
    db: DatabaseDep,
    status: Annotated[ReviewStatus | None, Query(description="e.g. pending")] = None,
    campaign_id: Annotated[str | None, Query(max_length=64, pattern=TEXT_ID_PATTERN)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ReviewPublic]:
    """Flagged messages, newest first, with how many recipients each one holds."""
    items = await tenant_reviews(
        session=session, tenant_id=tenant.id, status=status, campaign_id=campaign_id,
        after=after_id(cursor), limit=limit + 1,
    )  # fmt: skip
    async with db.read() as conn:
        held = await held_counts(conn, review_ids=[i.id or 0 for i in items[:limit]])
    return page(items, limit=limit, item=lambda i: _public(i, held.get(i.id or 0, 0)),
                cursor=lambda i: id_cursor(i.id or 0))  # fmt: skip


@router.get("/{review_id}", response_model=ReviewPublic)
async def read_review(
    review_id: RowId, session: SessionDep, tenant: TenantDep, db: DatabaseDep
) -> ReviewPublic:
    item = await get_review(session=session, tenant_id=tenant.id, review_id=review_id)
    async with db.read() as conn:
        held = await held_counts(conn, review_ids=[review_id])
    return _public(item, held.get(review_id, 0))


def _scanner(request: Request) -> PiiScanner:
    scanner: PiiScanner | None = getattr(request.app.state, "pii", None)
    if scanner is None:
        scanner = request.app.state.pii = PiiScanner()
    return scanner


async def _checked_edit(
    request: Request, session: SessionDep, tenant: Tenant, item: ReviewItem, body: ReviewApproval
) -> dict[str, Any] | None:
    if body.edits is None:
        return None
    merged = {**item.content, **body.edits.model_dump(exclude_none=True)}
    try:
        email = GeneratedEmail.model_validate(merged)
    except ValueError as exc:
        raise InvalidInput("edits", str(exc)) from exc
    products = await products_of(session=session, tenant_id=tenant.id)
    catalog = Catalog(products, tenant.website)
    prices = [ProductFact(v.name, v.price, v.url) for v in map(catalog.view, products)]
    problems = check_edit(email, prices, utcnow())
    for field, value in email.model_dump().items():
        found = await asyncio.to_thread(_scanner(request).scan, value)
        if found:
            entities = ", ".join(sorted({f.entity for f in found}))
            problems.append(f"{field} holds personal data ({entities}); use {{{{first_name}}}}")
    if problems:
        raise InvalidInput("edits", "; ".join(problems))
    return email.model_dump()


async def _decided(
    review_id: int, session: SessionDep, tenant: Tenant, gateway: GatewayDep, db: DatabaseDep
) -> ReviewDecided:
    # Committed before the signal: the workflow reads the decision from the store.
    await session.commit()
    item = await get_review(session=session, tenant_id=tenant.id, review_id=review_id)
    signalled = False
    try:
        signalled = await (await gateway.control()).review_decided(item.campaign_id, item.id or 0)
    except HTTPException:
        pass  # Temporal unreachable: the campaign re-checks the store hourly
    async with db.read() as conn:
        held = await held_counts(conn, review_ids=[item.id or 0])
    message = (
        "the campaign is delivering the held emails"
        if signalled
        else "decision recorded; the campaign will pick it up within the hour"
    )
    return ReviewDecided(review=_public(item, held.get(item.id or 0, 0)), signalled=signalled,
                         message=message)  # fmt: skip


@router.post("/{review_id}/approve", response_model=ReviewDecided, responses=problems(409))
async def approve(
    review_id: RowId,
    body: ReviewApproval,
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    caller: CallerDep,
    gateway: GatewayDep,
    db: DatabaseDep,
) -> ReviewDecided:
    """Send this content (or the edited version) to every recipient it holds. An edit is
    checked like the model's words: catalog prices only, no links, no past dates, no PII.
    `decided_by` is the caller's key id; a `reviewer` in the body is only kept in the note."""
    item = await get_review(session=session, tenant_id=tenant.id, review_id=review_id)
    final = await _checked_edit(request, session, tenant, item, body)
    conn = await session.connection()
    await decide(
        conn, review_id=review_id, status=ReviewStatus.APPROVED, reviewer=caller.actor,
        note=_note(body), final_content=final, edited=final is not None,
    )  # fmt: skip
    return await _decided(review_id, session, tenant, gateway, db)


@router.post("/{review_id}/reject", response_model=ReviewDecided, responses=problems(409))
async def reject(
    review_id: RowId,
    body: ReviewRejection,
    session: SessionDep,
    tenant: TenantDep,
    caller: CallerDep,
    gateway: GatewayDep,
    db: DatabaseDep,
) -> ReviewDecided:
    """Do not send this content: its recipients get the rules-tier email instead. `decided_by`
    is the caller's key id; a `reviewer` in the body is only kept in the note."""
    await get_review(session=session, tenant_id=tenant.id, review_id=review_id)  # or 404
    conn = await session.connection()
    await decide(
        conn, review_id=review_id, status=ReviewStatus.REJECTED, reviewer=caller.actor,
        note=_note(body),
    )  # fmt: skip
    return await _decided(review_id, session, tenant, gateway, db)
