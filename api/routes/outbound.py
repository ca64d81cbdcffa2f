"""Outbound webhook endpoints: register, change, rotate, delete, test; dead letters and replay.

Admins write, every reading role reads (api/access.py). An endpoint of another tenant answers
404, exactly like one that does not exist. Deliveries themselves run in the worker
(``OutboundWebhookWorkflow``); nothing here calls Temporal: a replay only queues rows, which the
worker's relay notices within a second or so.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response

from api.audit import audit_detail, audit_target
from api.deps import CallerDep, SessionDep, SettingsDep, TenantDep
from api.openapi import problems
from api.paging import Cursor, Limit, after_id, id_cursor, page
from api.schemas.base import Page
from api.schemas.outbound import (
    DeadLetterPublic,
    EndpointCreated,
    EndpointIn,
    EndpointPublic,
    EndpointsPublic,
    EndpointUpdate,
    ReplayIn,
    ReplayPublic,
    RotateIn,
    SecretRotated,
    TestDelivery,
)
from tailor.errors import InvalidInput
from tailor.models import WebhookEndpoint
from tailor.outbound import endpoints
from tailor.outbound.delivery import Poster
from tailor.store import outbound as store

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhook endpoints"])
EndpointId = Annotated[str, Path(max_length=32, pattern=r"^whe_[0-9a-f]{16}$")]
PENDING_CAP = 10_000
NOT_NULL = ("url", "event_types", "format", "description", "batch_size", "status")


async def _public(session: SessionDep, endpoint: WebhookEndpoint) -> EndpointPublic:
    pending = await store.pending_count(session, endpoint_id=endpoint.id, cap=PENDING_CAP)
    return EndpointPublic.model_validate(
        {**endpoint.model_dump(), "pending": pending,
         "has_segment_write_key": endpoint.write_key_sealed is not None}
    )  # fmt: skip


@router.post("", response_model=EndpointCreated, status_code=201)
async def register(
    body: EndpointIn,
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    caller: CallerDep,
    settings: SettingsDep,
) -> EndpointCreated:
    """A URL to receive the event types named. The response holds the signing secret: it is
    never shown again (rotate to get a new one)."""
    issued = await endpoints.register(
        session=session,
        tenant_id=tenant.id,
        spec=endpoints.EndpointSpec(**body.model_dump()),
        created_by=caller.actor,
        server_secret=settings.outbound_secret,
        allow_private=settings.outbound_private_urls,
    )
    audit_target(request, webhook_endpoint_id=issued.endpoint.id)
    public = await _public(session, issued.endpoint)
    return EndpointCreated(**public.model_dump(), secret=issued.secret)


@router.get("", response_model=EndpointsPublic)
async def list_endpoints(session: SessionDep, tenant: TenantDep) -> EndpointsPublic:
    """The tenant's endpoints, oldest first; never a secret or write key."""
    found = await store.endpoints_of(session=session, tenant_id=tenant.id)
    return EndpointsPublic(items=[await _public(session, e) for e in found])


@router.get("/{endpoint_id}", response_model=EndpointPublic)
async def read_endpoint(
    endpoint_id: EndpointId, session: SessionDep, tenant: TenantDep
) -> EndpointPublic:
    """An endpoint, with its queue and the last failure, if any."""
    endpoint = await store.get_endpoint(session=session, tenant_id=tenant.id,
                                        endpoint_id=endpoint_id)  # fmt: skip
    return await _public(session, endpoint)


@router.patch("/{endpoint_id}", response_model=EndpointPublic)
async def change_endpoint(
    endpoint_id: EndpointId,
    body: EndpointUpdate,
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    caller: CallerDep,
    settings: SettingsDep,
) -> EndpointPublic:
    """Change the named fields. `"status": "disabled"` pauses deliveries (the queue waits),
    `"active"` resumes them and clears a disabled endpoint's failures."""
    changes = body.model_dump(exclude_unset=True)
    for name in NOT_NULL:
        if name in changes and changes[name] is None:
            raise InvalidInput(name, "may not be null")
    endpoint = await endpoints.change(
        session=session, tenant_id=tenant.id, endpoint_id=endpoint_id, changes=changes,
        actor=caller.actor, server_secret=settings.outbound_secret,
        allow_private=settings.outbound_private_urls,
    )  # fmt: skip
    audit_target(request, webhook_endpoint_id=endpoint.id)
    audit_detail(request, changed=sorted(changes))
    return await _public(session, endpoint)


@router.delete("/{endpoint_id}", status_code=204, response_class=Response)
async def delete_endpoint(
    endpoint_id: EndpointId, request: Request, session: SessionDep, tenant: TenantDep
) -> Response:
    """Stop sending to it, now and for good; what was queued for it is dropped."""
    await endpoints.remove(session=session, tenant_id=tenant.id, endpoint_id=endpoint_id)
    audit_target(request, webhook_endpoint_id=endpoint_id)
    return Response(status_code=204)


@router.post("/{endpoint_id}/rotate-secret", response_model=SecretRotated)
async def rotate_secret(
    endpoint_id: EndpointId,
    body: RotateIn,
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    settings: SettingsDep,
) -> SecretRotated:
    """A new signing secret, shown once. Until `previous_secret_expires_at` each delivery
    carries a signature with each secret, so the receiver can switch at its own pace."""
    issued = await endpoints.rotate(
        session=session, tenant_id=tenant.id, endpoint_id=endpoint_id,
        grace=timedelta(hours=body.expire_previous_in_hours),
        server_secret=settings.outbound_secret,
    )  # fmt: skip
    audit_target(request, webhook_endpoint_id=endpoint_id)
    endpoint = issued.endpoint
    return SecretRotated(
        id=endpoint.id, secret=issued.secret, secret_version=endpoint.secret_version,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
    )  # fmt: skip


@router.post("/{endpoint_id}/test", response_model=TestDelivery)
async def send_test(
    endpoint_id: EndpointId, session: SessionDep, tenant: TenantDep, settings: SettingsDep
) -> TestDelivery:
    """Post one `webhook.test` event to the endpoint now (whatever it subscribes to), signed
    like every delivery, and say what it answered. Not stored, not retried."""
    endpoint = await store.get_endpoint(session=session, tenant_id=tenant.id,
                                        endpoint_id=endpoint_id)  # fmt: skip
    await session.commit()  # no transaction held open across the request to the endpoint
    poster = Poster(
        server_secret=settings.outbound_secret, allow_private=settings.outbound_private_urls,
        timeout_s=settings.outbound_timeout_s,
    )  # fmt: skip
    try:
        result = await poster.probe(endpoint)
    finally:
        await poster.close()
    return TestDelivery(
        delivered=result.delivered, status_code=result.status_code, error=result.error,
        duration_ms=result.duration_ms,
    )  # fmt: skip


@router.get("/{endpoint_id}/dead-letters", response_model=Page[DeadLetterPublic])
async def list_dead_letters(
    endpoint_id: EndpointId,
    session: SessionDep,
    tenant: TenantDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DeadLetterPublic]:
    """Events whose retries ran out (or were queued when the endpoint was disabled for
    failing), newest first, with the last error."""
    await store.get_endpoint(session=session, tenant_id=tenant.id, endpoint_id=endpoint_id)
    found = await store.dead_letters(session=session, endpoint_id=endpoint_id,
                                     after=after_id(cursor), limit=limit + 1)  # fmt: skip
    return page(found, limit=limit,
                item=lambda d: DeadLetterPublic.model_validate(d, from_attributes=True),
                cursor=lambda d: id_cursor(d.id or 0))  # fmt: skip


@router.post(
    "/{endpoint_id}/dead-letters/replay", response_model=ReplayPublic, responses=problems(409)
)
async def replay_dead_letters(
    endpoint_id: EndpointId,
    body: ReplayIn,
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
) -> ReplayPublic:
    """Queue dead letters again (the ids given, or all; 10,000 a call), in their original
    order and with their original event ids. The endpoint must be active."""
    try:
        replayed, remaining = await endpoints.replay(
            session=session, tenant_id=tenant.id, endpoint_id=endpoint_id,
            delivery_ids=body.ids,
        )  # fmt: skip
    except endpoints.EndpointConflict as conflict:
        raise HTTPException(409, str(conflict)) from conflict
    audit_target(request, webhook_endpoint_id=endpoint_id)
    audit_detail(request, replayed=replayed)
    return ReplayPublic(replayed=replayed, remaining=remaining)
