"""Registering and looking after a tenant's endpoints: the API's service.

A new endpoint gets an id and a signing secret, shown once (``IssuedEndpoint``); the secret can
be recomputed, so it is never stored (``tailor.outbound.signing``). Rotating bumps the secret's
version; the old one keeps signing alongside the new for a grace period. Disabling pauses an
endpoint (its queue waits; nothing new is queued); enabling resumes it and forgets its failures.
Deleting is final: its queue is dropped with it. Dead letters are replayed as new pending rows
with the same event ids; the worker's relay picks them up within a second or so.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tailor.errors import InvalidInput
from tailor.models import EndpointFormat, EndpointStatus, WebhookEndpoint, utcnow
from tailor.outbound.events import ALL
from tailor.outbound.signing import endpoint_secret, seal
from tailor.outbound.urls import check_url
from tailor.store import outbound as store

MAX_ENDPOINTS = 20  # per tenant: each event is queued once per endpoint that takes it
REPLAY_LIMIT = 10_000  # dead letters replayed per call; call again for the rest


class EndpointConflict(Exception):
    """The endpoint's state does not allow this (HTTP 409)."""


@dataclass(frozen=True)
class EndpointSpec:
    url: str
    event_types: list[str]
    format: str = EndpointFormat.TAILOR.value
    description: str = ""
    segment_write_key: str | None = None
    batch_size: int = 100


@dataclass(frozen=True)
class IssuedEndpoint:
    """An endpoint and its signing secret: the only time the secret is shown."""

    endpoint: WebhookEndpoint
    secret: str


def _event_types(event_types: list[str]) -> list[str]:
    unique = list(dict.fromkeys(event_types))
    if not unique:
        raise InvalidInput("event_types", 'name at least one event type, or "*" for all')
    return [ALL] if ALL in unique else unique


def _write_key(server_secret: str, endpoint_id: str, fmt: str, write_key: str | None) -> str | None:
    if write_key is None:
        return None
    if fmt != EndpointFormat.SEGMENT:
        raise InvalidInput("segment_write_key", 'only for endpoints of format "segment"')
    return seal(server_secret, write_key, endpoint_id)


async def register(
    *,
    session: AsyncSession,
    tenant_id: str,
    spec: EndpointSpec,
    created_by: str,
    server_secret: str,
    allow_private: bool,
) -> IssuedEndpoint:
    if len(await store.endpoints_of(session=session, tenant_id=tenant_id)) >= MAX_ENDPOINTS:
        raise InvalidInput("url", f"a tenant has at most {MAX_ENDPOINTS} endpoints; delete one")
    endpoint_id = f"whe_{secrets.token_hex(8)}"
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        tenant_id=tenant_id,
        url=check_url(spec.url, allow_private=allow_private),
        description=spec.description,
        event_types=_event_types(spec.event_types),
        format=spec.format,
        batch_size=spec.batch_size,
        write_key_sealed=_write_key(
            server_secret, endpoint_id, spec.format, spec.segment_write_key
        ),
        created_by=created_by,
    )
    await store.add_endpoint(session=session, endpoint=endpoint)
    return IssuedEndpoint(endpoint, endpoint_secret(server_secret, endpoint_id, 1))


async def change(
    *,
    session: AsyncSession,
    tenant_id: str,
    endpoint_id: str,
    changes: dict[str, Any],
    actor: str,
    server_secret: str,
    allow_private: bool,
) -> WebhookEndpoint:
    """Apply the fields given (a PATCH). ``segment_write_key: None`` removes the key."""
    endpoint = await store.get_endpoint(session=session, tenant_id=tenant_id,
                                        endpoint_id=endpoint_id)  # fmt: skip
    if "url" in changes:
        endpoint.url = check_url(changes["url"], allow_private=allow_private)
    if "event_types" in changes:
        endpoint.event_types = _event_types(changes["event_types"])
    for name in ("description", "batch_size", "format"):
        if name in changes:
            setattr(endpoint, name, changes[name])
    if "segment_write_key" in changes:
        endpoint.write_key_sealed = _write_key(
            server_secret, endpoint.id, endpoint.format, changes["segment_write_key"]
        )
    elif endpoint.format != EndpointFormat.SEGMENT:
        endpoint.write_key_sealed = None  # a write key only ever goes to a Segment endpoint
    status = changes.get("status")
    if status == EndpointStatus.ACTIVE and endpoint.status != EndpointStatus.ACTIVE:
        endpoint.status, endpoint.disabled_reason = EndpointStatus.ACTIVE.value, None
        endpoint.failing_batches = 0
    elif status == EndpointStatus.DISABLED and endpoint.status != EndpointStatus.DISABLED:
        endpoint.status = EndpointStatus.DISABLED.value
        endpoint.disabled_reason = f"disabled by {actor}"[:300]
    endpoint.updated_at = utcnow()
    await session.flush()
    return endpoint


async def rotate(
    *,
    session: AsyncSession,
    tenant_id: str,
    endpoint_id: str,
    grace: timedelta,
    server_secret: str,
) -> IssuedEndpoint:
    """A new secret; the previous one still signs (alongside) until ``grace`` has passed."""
    endpoint = await store.get_endpoint(session=session, tenant_id=tenant_id,
                                        endpoint_id=endpoint_id)  # fmt: skip
    now = utcnow()
    endpoint.secret_version += 1
    endpoint.previous_secret_expires_at = now + grace if grace > timedelta(0) else None
    endpoint.updated_at = now
    await session.flush()
    return IssuedEndpoint(endpoint, endpoint_secret(server_secret, endpoint.id,
                                                    endpoint.secret_version))  # fmt: skip


async def remove(*, session: AsyncSession, tenant_id: str, endpoint_id: str) -> None:
    """Delete an endpoint: nothing more is queued or sent to it; its rows are pruned."""
    endpoint = await store.get_endpoint(session=session, tenant_id=tenant_id,
                                        endpoint_id=endpoint_id)  # fmt: skip
    endpoint.status = EndpointStatus.DELETED.value
    endpoint.write_key_sealed = None
    endpoint.updated_at = utcnow()
    await session.flush()


async def replay(
    *,
    session: AsyncSession,
    tenant_id: str,
    endpoint_id: str,
    delivery_ids: Collection[int] | None,
) -> tuple[int, int]:
    """Queue the endpoint's dead letters again (these ids, or all); (replayed, still dead)."""
    endpoint = await store.get_endpoint(session=session, tenant_id=tenant_id,
                                        endpoint_id=endpoint_id)  # fmt: skip
    if endpoint.status != EndpointStatus.ACTIVE:
        raise EndpointConflict(
            "the endpoint is disabled: enable it first (PATCH status active), then replay"
        )
    conn: AsyncConnection = await session.connection()
    return await store.replay(conn, endpoint_id=endpoint.id, delivery_ids=delivery_ids,
                              now=utcnow(), limit=REPLAY_LIMIT)  # fmt: skip
