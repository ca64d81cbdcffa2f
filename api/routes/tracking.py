"""The open pixel and the click redirect, on the tenant's tracking URL. Public: the signed token
in the path is the credential.

Neither waits for the hit to be recorded (``tailor.engagement.tracker`` does that in the
background): the pixel answers its GIF whatever the token, and the redirect answers as soon as it
knows the target, which is only ever one of the links Tailor put in that email.

They are the API's busiest routes by far (every open and click of every email), and public, so
``TrackingFastPath`` answers them in front of the app's per-request machinery (access rules,
rate limits, audit trail, body limits: none of which applies to them), through the same
functions as the routes below, which document them and answer when the app runs without it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path, Request, Response
from fastapi.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.audit import REQUEST_ID_HEADER
from api.openapi import problems
from tailor.engagement.tracker import RawHit, Tracking
from tailor.models import utcnow
from tailor.tracking.tokens import TrackingKind

router = APIRouter(prefix="/t", tags=["tracking"])
MAX_TOKEN = 64
Token = Annotated[str, Path(min_length=1, max_length=MAX_TOKEN)]

# A 1x1 transparent GIF.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
NO_STORE = {
    # Every open must reach us: no browser, proxy or mail client may answer from a cache.
    "Cache-Control": "no-store, no-cache, must-revalidate, private",
    "Pragma": "no-cache",
}
UNKNOWN_LINK = "unknown link"
LOCATION_SAFE = ":/%#?=@[]!$&'()*+,;"  # what Starlette's RedirectResponse leaves unquoted


def _offer(
    tracker: Tracking, kind: TrackingKind, token: str, method: str, agent: str, ip: str | None
) -> None:
    tracker.offer(RawHit(kind=kind, token=token, method=method, user_agent=agent, ip=ip,
                         at=utcnow()))  # fmt: skip


def pixel_hit(tracker: Tracking, token: str, method: str, agent: str, ip: str | None) -> None:
    """What the pixel does besides answering its GIF: offer a plausible token for recording."""
    # The path is not validated: a malformed token still gets the GIF (and the recorder, which
    # never raises here, records nothing for it).
    if len(token) <= MAX_TOKEN:
        _offer(tracker, TrackingKind.OPEN, token, method, agent, ip)


async def click_target(
    tracker: Tracking, token: str, method: str, agent: str, ip: str | None
) -> str | None:
    """Where a click redirects to (and the click offered for recording), or None: 404."""
    found = await tracker.target(token)
    if found is None:
        return None
    _offer(tracker, TrackingKind.CLICK, token, method, agent, ip)
    return found[0]


def _tracker(request: Request) -> Tracking:
    tracker: Tracking = request.app.state.tracker
    return tracker


def _client(request: Request) -> tuple[str, str | None]:
    ip = request.client.host if request.client is not None else None
    return request.headers.get("user-agent", ""), ip


_GIF: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/gif": {}}, "description": "A 1x1 transparent GIF."}
}


@router.get("/o/{token}", response_class=Response, responses=_GIF, operation_id="open_pixel")
@router.head("/o/{token}", response_class=Response, responses=_GIF, operation_id="open_pixel_head")
async def open_pixel(token: str, request: Request) -> Response:
    """The open pixel: always a 1x1 GIF, never cached. A valid token records an open."""
    pixel_hit(_tracker(request), token, request.method, *_client(request))
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get(
    "/c/{token}", status_code=302, response_class=RedirectResponse, responses=problems(404),
    operation_id="click",
)  # fmt: skip
@router.head(
    "/c/{token}", status_code=302, response_class=RedirectResponse, responses=problems(404),
    operation_id="click_head",
)  # fmt: skip
async def click(token: Token, request: Request) -> RedirectResponse:
    """The click redirect: 302 to the link of the email the token names, and records a click;
    404 for a token that is not one Tailor signed or a link that is not in that email."""
    url = await click_target(_tracker(request), token, request.method, *_client(request))
    if url is None:
        raise HTTPException(404, UNKNOWN_LINK)
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


_PIXEL_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(PIXEL)).encode()),
    *((k.lower().encode(), v.encode()) for k, v in NO_STORE.items()),
]
_NOT_FOUND = b'{"message":"' + UNKNOWN_LINK.encode() + b'"}'
_NOT_FOUND_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_NOT_FOUND)).encode()),
]
_REDIRECT_HEADERS = [
    (b"content-length", b"0"),
    *((k.lower().encode(), v.encode()) for k, v in NO_STORE.items()),
]


class TrackingFastPath:
    """ASGI, in front of the app: GET and HEAD on ``/t/o/{token}`` and ``/t/c/{token}`` answered
    directly, the same as the routes above answer; anything else (another method, a token
    too long for a click, a path with more in it) goes on to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path: str = scope["path"]
            kind = path[:5]
            token = path[5:]
            if kind in ("/t/o/", "/t/c/") and token and "/" not in token:
                if kind == "/t/o/":
                    await self._pixel(scope, send, token)
                    return
                if len(token) <= MAX_TOKEN:
                    await self._click(scope, send, token)
                    return
        await self.app(scope, receive, send)

    @staticmethod
    def _who(scope: Scope) -> tuple[str, str, str | None]:
        agent = ""
        for name, value in scope["headers"]:
            if name == b"user-agent":
                agent = value.decode("latin-1")
                break
        client = scope.get("client")
        return scope["method"], agent, client[0] if client else None

    async def _pixel(self, scope: Scope, send: Send, token: str) -> None:
        pixel_hit(scope["app"].state.tracker, token, *self._who(scope))
        await _answer(send, 200, _PIXEL_HEADERS, b"" if scope["method"] == "HEAD" else PIXEL)

    async def _click(self, scope: Scope, send: Send, token: str) -> None:
        url = await click_target(scope["app"].state.tracker, token, *self._who(scope))
        if url is None:
            body = b"" if scope["method"] == "HEAD" else _NOT_FOUND
            await _answer(send, 404, _NOT_FOUND_HEADERS, body)
            return
        location = quote(url, safe=LOCATION_SAFE).encode("latin-1")  # as RedirectResponse
        await _answer(send, 302, [(b"location", location), *_REDIRECT_HEADERS], b"")


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    request_id = (REQUEST_ID_HEADER.lower().encode(), uuid.uuid4().hex.encode())
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, request_id]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
