"""Every API request counted and timed (``tailor_api_requests_total``,
``tailor_api_request_duration_seconds``), by route template, never by path: ``/v1/contacts/42``
is ``/v1/contacts/{contact_id}``, and a path no route matched is ``unmatched``, so a scanner
walking random URLs cannot grow the label set."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tailor.observability.metrics import API_LATENCY, API_REQUESTS, status_class

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Answered in front of the router (api/routes/tracking.py), so no route is recorded for them.
_FAST_PATHS = {"/t/o/": "/t/o/{token}", "/t/c/": "/t/c/{token}"}


def route_of(scope: Scope) -> str:
    route = getattr(scope.get("route"), "path", None)
    if isinstance(route, str):
        return route
    return _FAST_PATHS.get(scope["path"][:5], UNMATCHED)


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes the app is a server error

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_of(scope)
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            API_REQUESTS.labels(route, method, status_class(status)).inc()
            API_LATENCY.labels(route, method).observe(time.perf_counter() - started)
