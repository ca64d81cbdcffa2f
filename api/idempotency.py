"""The ``Idempotency-Key`` header of creating POSTs (``tailor.accounts.idempotency``).

A route takes ``idempotency: IdempotencyDep`` and, once its work is done, calls
``await idempotency.remember(status_code, response)`` before returning. The dependency claims the
key before the route runs (a repeat is answered from the store without running the route at all:
``Replayed``, answered by ``replay_response`` with ``Idempotent-Replayed: true``) and gives the
key back if the route raises. Without the header it does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from api.audit import audit_detail
from api.deps import CallerDep, SessionDep
from tailor.accounts import idempotency
from tailor.accounts.idempotency import HEADER, MAX_KEY_LENGTH, KeyInFlight, Replay
from tailor.models import utcnow

log = logging.getLogger(__name__)

REPLAYED_HEADER = "Idempotent-Replayed"


class Replayed(Exception):
    """Answer with the stored response of the first request with this key."""

    def __init__(self, replay: Replay) -> None:
        super().__init__("replayed")
        self.replay = replay


async def replay_response(request: Request, exc: Exception) -> JSONResponse:
    """The app's handler for ``Replayed``."""
    assert isinstance(exc, Replayed)
    audit_detail(request, idempotent_replay=True)  # the entry says nothing new was created
    return JSONResponse(
        exc.replay.response,
        status_code=exc.replay.status_code,
        headers={REPLAYED_HEADER: "true"},
    )


class IdempotentCreate:
    """One create request's claim on its key (``claim_id`` None: sent without a key)."""

    def __init__(self, session: AsyncSession, claim_id: int | None) -> None:
        self._session = session
        self.claim_id = claim_id
        self.remembered = False

    async def remember(self, status_code: int, response: BaseModel) -> None:
        """Store the answer for repeats (and commit). Call it last, once the work is done."""
        if self.claim_id is not None:
            await idempotency.complete(
                session=self._session,
                claim_id=self.claim_id,
                status_code=status_code,
                response=response.model_dump(mode="json", by_alias=True),
            )
        self.remembered = True


async def idempotent_create(
    request: Request,
    session: SessionDep,
    caller: CallerDep,
    key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            max_length=MAX_KEY_LENGTH,
            description="Optional; a unique value per create (a UUID), 1-200 printable ASCII "
            "characters. Sent again within 24 hours with the same body, the request is not "
            "repeated: the first response comes back, with `Idempotent-Replayed: true`. The "
            "same key with another body answers 422; while the first request is still running, "
            "409. A request that failed does not keep its key, so it may be retried with it.",
        ),
    ] = None,
) -> AsyncIterator[IdempotentCreate]:
    if key is None or caller.tenant_id is None:
        yield IdempotentCreate(session, None)
        return
    idempotency.check_key(key)
    route = getattr(request.scope.get("route"), "path", request.url.path)
    try:
        claimed = await idempotency.claim(
            session=session,
            tenant_id=caller.tenant_id,
            key=key,
            route=f"{request.method} {route}",
            body_sha256=idempotency.fingerprint(await request.body()),
            now=utcnow(),
        )
    except KeyInFlight as exc:
        raise HTTPException(409, str(exc)) from exc
    if isinstance(claimed, Replay):
        raise Replayed(claimed)
    create = IdempotentCreate(session, claimed)
    try:
        yield create
    except BaseException:
        await _release(session, claimed)
        raise
    if not create.remembered:  # the route answered without storing it: nothing to replay
        await _release(session, claimed)


async def _release(session: AsyncSession, claim_id: int) -> None:
    try:
        await idempotency.release(session=session, claim_id=claim_id)
    except Exception as exc:  # the original error matters more; the claim is abandoned later
        log.warning("could not release idempotency claim %s (%s)", claim_id, type(exc).__name__)


# Function-scoped like the session it claims the key in: the claim is released, or the answer
# stored, before the response goes out.
IdempotencyDep = Annotated[IdempotentCreate, Depends(idempotent_create, scope="function")]
