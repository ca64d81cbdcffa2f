from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from api.audit import audit_detail
from api.deps import (
    CallerDep,
    DatabaseDep,
    FeatureCacheDep,
    GatewayDep,
    SessionDep,
    SettingsDep,
    TemporalGateway,
    TenantDep,
)
from api.idempotency import IdempotencyDep
from api.openapi import problems
from api.paging import Cursor, Limit, after_id, id_cursor, page
from api.schemas.base import Page, RowId
from api.schemas.contacts import (
    ConsentIn,
    ConsentPublic,
    ConsentRecorded,
    ContactExport,
    ContactListItem,
    ContactPublic,
    ContactsIn,
    ContactsUpserted,
    ContactUpserted,
    EmailOnItsWay,
    ErasurePublic,
)
from tailor.accounts.notes import with_note
from tailor.consent.ledger import LedgerEntry
from tailor.consent.revocation import settle
from tailor.errors import InvalidInput, NotFound
from tailor.journeys.definitions import journey_workflow_id
from tailor.models import ConsentStatus, ErasureStatus, utcnow
from tailor.store.campaigns import active_campaign_ids
from tailor.store.consent import (
    ClaimedSend,
    append_to_ledger,
    consent_history,
    record_consent,
    revoke_consent,
)
from tailor.store.contacts import ConsentState, get_contact, list_contacts, upsert_contacts
from tailor.store.erasure import contact_data, find_erasure, request_erasure, suppress_erased
from tailor.store.journeys import journey_keys

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/contacts", tags=["contacts"])


# The ledger's source column: a caller's deprecated ``recorded_by`` note must fit in it.
_SOURCE_LIMIT = 100


@router.post("", response_model=ContactsUpserted)
async def upsert(
    body: ContactsIn,
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    caller: CallerDep,
    features: FeatureCacheDep,
    idempotency: IdempotencyDep,
) -> ContactsUpserted:
    """Insert or update up to 10,000 contacts by email, all or nothing.

    An update changes only the fields the contact names: `{"email": ..., "first_name": "Ada"}`
    keeps the contact's last name, timezone, categories and the rest as they are (send `null`
    to clear a name). A new contact gets the documented defaults for the fields it leaves out.
    A `consent` given here is recorded as the caller's key, like `POST .../consent`.
    """
    # Only what the request set: a default must not overwrite what an earlier upsert stored.
    rows = [c.model_dump(exclude={"consent"}, exclude_unset=True) for c in body.contacts]
    results = await upsert_contacts(
        session=session, tenant_id=tenant.id, contacts=rows, suppress_erased_now=False
    )
    # One batch for the ledger: its chains are locked and read once for all the contacts.
    now = utcnow()
    await append_to_ledger(
        await session.connection(),
        [
            LedgerEntry(
                tenant_id=tenant.id,
                contact_id=result.id,
                status=ConsentStatus(contact.consent.status).value,
                source=with_note(
                    contact.consent.source, contact.consent.recorded_by, limit=_SOURCE_LIMIT
                ),
                method=contact.consent.method,
                wording_version=contact.consent.wording_version,
                recorded_by=caller.actor,
                recorded_at=now,
            )  # fmt: skip
            for contact, result in zip(body.contacts, results, strict=True)
            if contact.consent is not None
        ],
    )
    # After the body's consents: an erased person's address stays suppressed (only a later,
    # deliberate consent change lifts it).
    await suppress_erased(
        await session.connection(), tenant_id=tenant.id,
        contacts=[(r.id, c.email) for c, r in zip(body.contacts, results, strict=True)],
    )  # fmt: skip
    # Invalidate after the commit: a send reading before it would cache the old profile again.
    await session.commit()
    if features is not None:
        await features.invalidate(r.id for r in results if not r.created)
    data = [
        ContactUpserted(id=r.id, email=c.email.lower(), created=r.created)
        for c, r in zip(body.contacts, results, strict=True)
    ]
    created = sum(d.created for d in data)
    # Counts only: thousands of ids would swamp the entry, and addresses never go in it.
    audit_detail(request, contacts=len(data), created=created)
    upserted = ContactsUpserted(
        data=data, count=len(data), created=created, updated=len(data) - created
    )
    await idempotency.remember(200, upserted)
    return upserted


@router.get("", response_model=Page[ContactListItem])
async def list_all(
    session: SessionDep,
    tenant: TenantDep,
    email: Annotated[
        str | None, Query(min_length=1, max_length=320, description="The whole address, any case.")
    ] = None,
    consent: Annotated[
        ConsentState | None, Query(description="The newest consent ledger row's status, or none.")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ContactListItem]:
    """The tenant's contacts, newest first: who they are and their consent, not the profile."""
    if email is not None and "\x00" in email:  # PostgreSQL text cannot hold it: no such address
        raise InvalidInput("email", "must not contain NUL characters")
    rows = await list_contacts(session=session, tenant_id=tenant.id, after=after_id(cursor),
                               limit=limit + 1, email=email, consent=consent)  # fmt: skip
    return page(rows, limit=limit, item=ContactListItem.model_validate,
                cursor=lambda c: id_cursor(c.id))  # fmt: skip


@router.get("/{contact_id}", response_model=ContactPublic)
async def read(contact_id: RowId, session: SessionDep, tenant: TenantDep) -> ContactPublic:
    contact = await get_contact(session=session, tenant_id=tenant.id, contact_id=contact_id)
    history = await consent_history(session=session, contact_id=contact_id)
    return ContactPublic(
        **contact.model_dump(exclude={"tenant_id", "created_at", "updated_at"}),
        consent=history[-1].status if history else "none",
        consent_history=[ConsentPublic.model_validate(r, from_attributes=True) for r in history],
    )


@router.post("/{contact_id}/consent", response_model=ConsentRecorded)
async def change_consent(
    contact_id: RowId,
    body: ConsentIn,
    session: SessionDep,
    tenant: TenantDep,
    caller: CallerDep,
    gateway: GatewayDep,
    db: DatabaseDep,
    settings: SettingsDep,
) -> ConsentRecorded:
    """Append to the consent ledger. A revocation is committed before this answers, and no
    email is claimed for the contact after it: none reaches them afterwards except one already
    on its way (claimed before, not yet accepted by its provider), which `on_its_way` lists as
    it stood after waiting up to `consent_settle_s` for it to settle. Running campaigns and
    journeys are told at once.

    The row's `recorded_by` is the caller's key id (or token subject); a `recorded_by` in the
    body is deprecated and kept only as a note after the source."""
    await get_contact(session=session, tenant_id=tenant.id, contact_id=contact_id)
    source = with_note(body.source, body.recorded_by, limit=_SOURCE_LIMIT)
    claimed: list[ClaimedSend] = []
    if body.status == "revoked":
        record, claimed = await revoke_consent(
            session=session, tenant_id=tenant.id, contact_id=contact_id, source=source,
            method=body.method, wording_version=body.wording_version,
            recorded_by=caller.actor,
        )  # fmt: skip
    else:
        record = await record_consent(
            session=session, tenant_id=tenant.id, contact_id=contact_id,
            status=ConsentStatus(body.status), source=source, method=body.method,
            wording_version=body.wording_version, recorded_by=caller.actor,
        )  # fmt: skip
    if body.status != "revoked":
        await session.commit()
        return ConsentRecorded(
            record=ConsentPublic.model_validate(record, from_attributes=True),
            signalled_campaigns=[], stopped_journeys=[], on_its_way=[],
        )  # fmt: skip
    stopped = await _stop_sending(session, gateway, tenant_id=tenant.id, contact_id=contact_id)
    settled = await settle(db, claimed, within_s=settings.consent_settle_s)
    return ConsentRecorded(
        record=ConsentPublic.model_validate(record, from_attributes=True),
        signalled_campaigns=stopped.campaigns,
        stopped_journeys=stopped.journeys,
        on_its_way=[EmailOnItsWay.model_validate(s, from_attributes=True) for s in settled],
    )


@dataclass(frozen=True)
class _Stopped:
    campaigns: list[str]
    journeys: list[str]


async def _stop_sending(
    session: AsyncSession, gateway: TemporalGateway, *, tenant_id: str, contact_id: int
) -> _Stopped:
    """Commit the session's revocation, then tell running campaigns and journeys at once. The
    ledger stops every later claim whatever Temporal answers; telling them spares the work."""
    campaigns = await active_campaign_ids(session=session, tenant_id=tenant_id)
    # Every journey the person may be on, by its deterministic id (one that is not running
    # is simply not reached).
    journeys = [
        journey_workflow_id(tenant_id, key, contact_id)
        for key in await journey_keys(session, tenant_id=tenant_id)
    ]
    await session.commit()  # from here on, no claim for the contact succeeds
    if not (campaigns or journeys):
        return _Stopped([], [])
    try:
        control = await gateway.control()
        journey_control = await gateway.journeys()
    except HTTPException:
        log.warning("Temporal unreachable; revocation of %s enforced by the ledger", contact_id)
        return _Stopped([], [])
    signalled = (await control.revoke_consent(campaigns, contact_id)).signalled
    return _Stopped(signalled, await journey_control.revoke_consent(journeys))


@router.delete(
    "/{contact_id}",
    response_model=ErasurePublic,
    status_code=202,
    responses={
        200: {"model": ErasurePublic, "description": "Erased already: the erasure as it ended."},
        **problems(503),
    },
)
async def erase(
    contact_id: RowId,
    request: Request,
    response: Response,
    session: SessionDep,
    tenant: TenantDep,
    caller: CallerDep,
    gateway: GatewayDep,
    db: DatabaseDep,
    settings: SettingsDep,
) -> ErasurePublic:
    """Erase the person (GDPR Art. 17): sending to them stops before this answers (a
    revocation, as `POST .../consent` makes), then a workflow removes or blanks everything that
    identifies them and keeps only a salted hash of their address, so that the address imported
    again is suppressed. 202 while the workflow runs, 200 once it is done; asking again is
    safe and answers with the same erasure. The consent ledger, sends and engagement stay, as
    facts about an id no longer tied to anyone."""
    await get_contact(session=session, tenant_id=tenant.id, contact_id=contact_id)
    conn = await session.connection()
    erasure, new = await request_erasure(
        conn, tenant_id=tenant.id, contact_id=contact_id, requested_by=caller.actor
    )
    claimed: list[ClaimedSend] = []
    if new:
        _, claimed = await revoke_consent(
            session=session, tenant_id=tenant.id, contact_id=contact_id,
            source=f"erasure:{erasure.id}", method="erasure", wording_version="-",
            recorded_by=caller.actor,
        )  # fmt: skip
        await _stop_sending(session, gateway, tenant_id=tenant.id, contact_id=contact_id)
    else:
        await session.commit()
    audit_detail(request, erasure=erasure.id)
    workflow_id = None
    if erasure.status != ErasureStatus.DONE:
        workflow_id = await (await gateway.erasures()).start(erasure)
    else:
        response.status_code = 200
    settled = await settle(db, claimed, within_s=settings.consent_settle_s)
    return ErasurePublic.model_validate(
        {**erasure.model_dump(), "workflow_id": workflow_id,
         "on_its_way": [EmailOnItsWay.model_validate(s, from_attributes=True) for s in settled]}
    )  # fmt: skip


@router.get("/{contact_id}/erasure", response_model=ErasurePublic)
async def erasure_status(
    contact_id: RowId, session: SessionDep, tenant: TenantDep
) -> ErasurePublic:
    """Where the person's erasure stands (404 if none was asked for)."""
    erasure = await find_erasure(
        await session.connection(), tenant_id=tenant.id, contact_id=contact_id
    )
    if erasure is None:
        raise NotFound("erasure of contact", str(contact_id))
    return ErasurePublic.model_validate(erasure.model_dump())


@router.get("/{contact_id}/export", response_model=ContactExport)
async def export(contact_id: RowId, session: SessionDep, tenant: TenantDep) -> ContactExport:
    """Everything Tailor holds about the person (GDPR Art. 15 and 20), as JSON: the profile,
    the consent ledger's rows, events, the emails sent and why, opens, clicks, provider events,
    conversions and journeys. After an erasure, what is left: ids and facts, nothing that says
    who they were."""
    await get_contact(session=session, tenant_id=tenant.id, contact_id=contact_id)
    data = await contact_data(await session.connection(), tenant_id=tenant.id,
                              contact_id=contact_id)  # fmt: skip
    return ContactExport(
        tenant_id=tenant.id, contact_id=contact_id, exported_at=utcnow(), data=data
    )
