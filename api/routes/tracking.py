"""The open pixel and the click redirect, on the tenant's tracking URL. Public: the signed token
in the path is the credential.

Neither waits for the hit to be recorded (``tailor.engagement.tracker`` does that in the
background): the pixel answers its GIF whatever the token, and the redirect answers as soon as it
knows the target, which is only ever one of the links Tailor put in that email.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response
from fastapi.responses import RedirectResponse

from api.openapi import problems
from tailor.engagement.tracker import RawHit, Tracker
from tailor.models import utcnow
from tailor.tracking.tokens import TrackingKind

router = APIRouter(prefix="/t", tags=["tracking"])
Token = Annotated[str, Path(min_length=1, max_length=64)]

# A 1x1 transparent GIF.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
NO_STORE = {
    # Every open must reach us: no browser, proxy or mail client may answer from a cache.
    "Cache-Control": "no-store, no-cache, must-revalidate, private",
    "Pragma": "no-cache",
}


def _tracker(request: Request) -> Tracker:
    tracker: Tracker = request.app.state.tracker
    return tracker


def _offer(request: Request, kind: TrackingKind, token: str) -> None:
    _tracker(request).offer(
        RawHit(
            kind=kind,
            token=token,
            method=request.method,
            user_agent=request.headers.get("user-agent", ""),
            ip=request.client.host if request.client is not None else None,
            at=utcnow(),
        )
    )


_GIF: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/gif": {}}, "description": "A 1x1 transparent GIF."}
}


@router.get("/o/{token}", response_class=Response, responses=_GIF, operation_id="open_pixel")
@router.head("/o/{token}", response_class=Response, responses=_GIF, operation_id="open_pixel_head")
async def open_pixel(token: str, request: Request) -> Response:
    """The open pixel: always a 1x1 GIF, never cached. A valid token records an open."""
    # The path is not validated by FastAPI: a malformed token still gets the GIF (and the
    # recorder, which never raises here, records nothing for it).
    if len(token) <= 64:
        _offer(request, TrackingKind.OPEN, token)
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
    found = await _tracker(request).target(token)
    if found is None:
        raise HTTPException(404, "unknown link")
    _offer(request, TrackingKind.CLICK, token)
    return RedirectResponse(found[0], status_code=302, headers=NO_STORE)
