"""The audit trail of the API: one entry per mutating call on a non-public route, whatever its
outcome, and an ``X-Request-ID`` on every response.

A pure ASGI middleware rather than a dependency: only it sees the final status code, including
401/403 from the access gate, 422 from validation and 500 from a crash. It passes every message
through untouched (streaming stays streaming) but for adding the header to the response start,
and writes the entry after the response has gone, in a transaction of its own, with the app's
Database. Nothing of the request body is read or kept.

Handlers add what the path does not say through ``audit_target`` (the id of what they created)
and ``audit_detail`` (counts, names of changed fields): never personal data.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.access import AUDITED_WHEN_REFUSED_ONLY, ROUTE_ROLES
from tailor.accounts.audit import MUTATING, audit_entry, record
from tailor.accounts.principal import Principal
from tailor.db import Database
from tailor.models import utcnow

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# Keys in the request's state (``scope["state"]``, what ``request.state`` reads and writes).
_TARGETS = "audit_targets"
_DETAIL = "audit_detail"


def audit_target(request: Request, **ids: int | str) -> None:
    """Name what the call created, e.g. ``audit_target(request, campaign_id=campaign.id)``."""
    _state_dict(request, _TARGETS).update(ids)


def audit_detail(request: Request, **values: Any) -> None:
    """Add counts or field names to the entry. Never values a person could be known by."""
    _state_dict(request, _DETAIL).update(values)


def _state_dict(request: Request, key: str) -> dict[str, Any]:
    found: dict[str, Any] | None = getattr(request.state, key, None)
    if found is None:
        found = {}
        setattr(request.state, key, found)
    return found


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        # The router and handlers write into this same dict through request.state.
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status: list[int] = []

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # The server answers 500 for what escaped; the trail records the failure first.
            await self._record(scope, status[0] if status else 500, request_id)
            raise
        if status:
            await self._record(scope, status[0], request_id)

    async def _record(self, scope: Scope, status_code: int, request_id: str) -> None:
        method = str(scope["method"]).upper()
        route = getattr(scope.get("route"), "path", None)
        # Only calls that reached a route of ours with an access rule: a 404 for an unknown
        # path names no route, a 405 a method the route has no rule for, and public routes
        # (rule None) carry their own credentials.
        if method not in MUTATING or route is None or ROUTE_ROLES.get((method, route)) is None:
            return
        if route in AUDITED_WHEN_REFUSED_ONLY and status_code < 400:
            return
        state: dict[str, Any] = scope.get("state", {})
        principal: Principal | None = state.get("principal")
        entry = audit_entry(
            principal=principal,
            method=method,
            route=route,
            targets={**scope.get("path_params", {}), **state.get(_TARGETS, {})},
            status_code=status_code,
            request_id=request_id,
            detail=state.get(_DETAIL, {}),
            at=utcnow(),
        )
        db: Database | None = getattr(scope["app"].state, "db", None)
        if db is None:  # an app run without its lifespan: nowhere to write
            log.error("audit entry for request %s not written: no database", request_id)
            return
        try:
            await record(db, entry)
        except Exception as exc:
            # The call's answer has gone; failing now would only hide the call. Say so without
            # any of its data, so the gap in the trail is itself on record.
            log.error(
                "audit entry for %s %s (request %s, status %d) not written: %s",
                method,
                route,
                request_id,
                status_code,
                type(exc).__name__,
            )
