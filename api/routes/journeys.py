"""Journeys: versioned definitions, trigger rules, runs, and the dead-letter store."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from api.audit import audit_target
from api.deps import SessionDep, TenantDep, TriggersDep
from api.openapi import problems
from api.paging import Cursor, Limit, after_id, after_time, id_cursor, page, time_cursor
from api.schemas.base import MAX_ROW_ID, Page, RowId
from api.schemas.journeys import (
    DeadLetterPublic,
    JourneyPublic,
    JourneyRunPublic,
    JourneysPublic,
    ReplayPublic,
    TriggerRulePublic,
    TriggerRulesPublic,
)
from tailor.journeys.definitions import JourneySpec, RuleSpec
from tailor.models import DeadLetterStatus, Event, Holdout, JourneyDefinition
from tailor.store.events import StoredEvent
from tailor.store.journeys import (
    create_definition,
    create_rule,
    get_dead_letter,
    install_builtins,
    latest_definitions,
    list_dead_letters,
    list_rules,
    list_runs,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["journeys"])


def _public(definition: JourneyDefinition) -> JourneyPublic:
    public = JourneyPublic.model_validate(definition, from_attributes=True)
    # The journey's holdout is recorded on each of its send steps (and their campaigns).
    holdout = next((s["holdout"] for s in definition.steps if s.get("holdout")), None)
    if holdout is None:
        return public
    return public.model_copy(update={"holdout": Holdout.model_validate(holdout)})


@router.get("/journeys", response_model=JourneysPublic)
async def journeys(session: SessionDep, tenant: TenantDep) -> JourneysPublic:
    """The newest version of each of the tenant's journeys."""
    data = [_public(d) for d in await latest_definitions(session=session, tenant_id=tenant.id)]
    return JourneysPublic(data=data, count=len(data))


@router.post("/journeys", response_model=JourneyPublic, status_code=201)
async def new_version(
    spec: JourneySpec, request: Request, session: SessionDep, tenant: TenantDep
) -> JourneyPublic:
    """A new version of a journey (or its first). Running journeys keep their version."""
    definition = await create_definition(session=session, tenant_id=tenant.id, spec=spec)
    audit_target(request, journey_definition_id=definition.id or 0)
    return _public(definition)


@router.post("/journeys/builtins", response_model=JourneysPublic)
async def builtins(session: SessionDep, tenant: TenantDep) -> JourneysPublic:
    """Install the built-in journeys (welcome, cart abandonment, re-engagement, milestones)
    and their trigger rules, for those the tenant lacks."""
    await install_builtins(session=session, tenant_id=tenant.id)
    data = [_public(d) for d in await latest_definitions(session=session, tenant_id=tenant.id)]
    return JourneysPublic(data=data, count=len(data))


@router.get("/journeys/runs", response_model=Page[JourneyRunPublic])
async def runs(
    session: SessionDep,
    tenant: TenantDep,
    contact_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[JourneyRunPublic]:
    """Journey runs, newest first (by when they started)."""
    found = await list_runs(session=session, tenant_id=tenant.id, contact_id=contact_id,
                            after=after_time(cursor), limit=limit + 1)  # fmt: skip
    return page(found, limit=limit,
                item=lambda r: JourneyRunPublic.model_validate(r, from_attributes=True),
                cursor=lambda r: time_cursor(r.started_at, r.id))  # fmt: skip


@router.get("/trigger-rules", response_model=TriggerRulesPublic)
async def rules(session: SessionDep, tenant: TenantDep) -> TriggerRulesPublic:
    data = [TriggerRulePublic.model_validate(r, from_attributes=True)
            for r in await list_rules(session=session, tenant_id=tenant.id)]  # fmt: skip
    return TriggerRulesPublic(data=data, count=len(data))


@router.post("/trigger-rules", response_model=TriggerRulePublic, status_code=201)
async def new_rule(
    spec: RuleSpec, request: Request, session: SessionDep, tenant: TenantDep
) -> TriggerRulePublic:
    rule = await create_rule(session=session, tenant_id=tenant.id, spec=spec)
    audit_target(request, trigger_rule_id=rule.id or 0)
    return TriggerRulePublic.model_validate(rule, from_attributes=True)


@router.get("/dead-letters", response_model=Page[DeadLetterPublic])
async def dead_letters(
    session: SessionDep,
    tenant: TenantDep,
    status: Literal["open", "replayed"] | None = "open",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DeadLetterPublic]:
    """Events whose trigger processing failed, newest first (default: not yet replayed)."""
    found = await list_dead_letters(session=session, tenant_id=tenant.id, status=status,
                                    after=after_id(cursor), limit=limit + 1)  # fmt: skip
    return page(found, limit=limit, item=lambda f: _dead_letter(f.letter, f.event),
                cursor=lambda f: id_cursor(f.letter.id or 0))  # fmt: skip


@router.post(
    "/dead-letters/{dead_letter_id}/replay", response_model=ReplayPublic, responses=problems(503)
)
async def replay(
    dead_letter_id: RowId, session: SessionDep, tenant: TenantDep, triggers: TriggersDep
) -> ReplayPublic:
    """Process the event again. Safe to repeat: journeys ignore an event id they have seen."""
    failed = await get_dead_letter(session=session, tenant_id=tenant.id,
                                   dead_letter_id=dead_letter_id)  # fmt: skip
    letter, event = failed.letter, failed.event
    await session.commit()  # release the read before the agent writes
    try:
        outcome = await triggers.replay(tenant.id, _stored(event))
    except HTTPException:
        raise
    except Exception as exc:
        raise HTTPException(
            503, f"replay failed again ({type(exc).__name__}: {exc}); it stays in the store"
        ) from exc
    return ReplayPublic(
        id=letter.id or 0, status=DeadLetterStatus.REPLAYED, started=outcome.started,
        forwarded=outcome.forwarded,
    )  # fmt: skip


def _stored(event: Event) -> StoredEvent:
    return StoredEvent(event.id or 0, event.tenant_id, event.contact_id, event.type,
                       event.message_id or "", event.occurred_at)  # fmt: skip


def _dead_letter(letter: object, event: Event) -> DeadLetterPublic:
    public = DeadLetterPublic.model_validate(letter, from_attributes=True)
    return public.model_copy(update={"event": event.type, "contact_id": event.contact_id,
                                     "message_id": event.message_id})  # fmt: skip
