"""Request body size limits, as a pure ASGI middleware in front of the whole app.

A body is refused with 413 before any of it is stored: at once when its ``Content-Length`` is
over the limit (the app is never called), and otherwise as soon as the chunks read so far pass
it (a chunked upload says nothing up front). In the second case the app is already running and
reading the body, so the refusal is an ``HTTPException`` raised from ``receive``: FastAPI passes
it on to the app's handler, which answers ``{"message": ...}``; a route that reads the stream
itself sees the same exception before it has the whole body. Either way nothing past the limit
is ever held in memory.

What happens to the rest of the body: one refused by its ``Content-Length`` is read and dropped
by the server (uvicorn does), so a client that uploads it all before reading still sees the 413
and its message; that costs at most the declared length. A chunked one has no end the server
knows of, so its 413 says ``Connection: close`` and the connection is dropped: clients that read
the response while uploading (curl, browsers) see the 413, others see the connection reset.

Batch routes take larger bodies (``api_max_batch_body_bytes``), a route with a limit of its own
(the catalog CSV upload) takes that, and every other route takes ``api_max_body_bytes``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Routes whose bodies are batches: Segment batches, bulk contacts, the catalog (JSON and CSV).
BATCH_PATHS: Final = frozenset({"/v1/batch", "/v1/contacts", "/v1/products", "/v1/products/csv"})


def _size(n: int) -> str:
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} bytes"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int, path: str, seen: str, *, close: bool) -> None:
        super().__init__(
            413,
            f"request body over {_size(limit)}: {seen}; the limit on {path} is {limit} bytes "
            "(send large lists in several requests)",
            headers={"Connection": "close"} if close else None,
        )


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:  # the server refuses a malformed one; count the chunks regardless
        return None


class BodySizeLimit:
    """Refuse request bodies over a size limit with 413 (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        batch_max_bytes: int,
        route_max_bytes: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.batch_max_bytes = batch_max_bytes
        self.route_max_bytes = dict(route_max_bytes or {})

    def limit_for(self, path: str) -> int:
        path = path.rstrip("/")
        if path in self.route_max_bytes:
            return self.route_max_bytes[path]
        return self.batch_max_bytes if path in BATCH_PATHS else self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.limit_for(path)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(
                send, BodyTooLarge(limit, path, f"Content-Length is {declared}", close=False)
            )
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, path, f"more than {limit} bytes sent", close=True)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge as exc:
            # Only reached when nothing inside answered it; a started response cannot change.
            if started:
                raise
            await _refuse(send, exc)


async def _refuse(send: Send, exc: BodyTooLarge) -> None:
    body = json.dumps({"message": exc.detail}).encode()
    headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        **{k.lower(): v for k, v in (exc.headers or {}).items()},
    }
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})
