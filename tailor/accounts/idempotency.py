"""Idempotent creates: a create sent again with the same ``Idempotency-Key`` gets the first
answer instead of creating a second thing.

The first request with a key claims it: a row committed *before* the work starts, so a retry that
arrives while the work runs finds the claim (``KeyInFlight``, HTTP 409) instead of starting a
second copy. When the work succeeds its status and JSON response are stored on the row; a retry
with the same body within ``REPLAY_FOR`` gets them back (``Replay``). The same key with another
body is a client bug and is refused (``KeyReused``, 422).

A request that fails (any 4xx or 5xx) releases its claim, so the key can be retried. The creates
that use this are all-or-nothing (a campaign whose workflow does not start is deleted again), so
a failure created nothing and a retry that succeeds still creates exactly once; storing a 4xx
would only make the client mint a new key after fixing, say, an unknown template id.

A claim older than ``ABANDONED_AFTER`` that never got a response belongs to a process that died
mid-request; it is taken over rather than answering 409 for a day. Claims older than
``REPLAY_FOR`` are forgotten: deleted whenever a new claim is made.

Bodies are compared by a digest of their canonical JSON (keys sorted, no spacing), so a retry
that re-serialises the same object still matches.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tailor.errors import InvalidInput, TailorError
from tailor.store.idempotency import (
    complete_claim,
    delete_claim,
    delete_claims_before,
    find_claim,
    insert_claim,
)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200
REPLAY_FOR = timedelta(hours=24)
# Far longer than any create takes (the largest, 10,000 contacts, takes seconds).
ABANDONED_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class Replay:
    """The stored answer to the first request with this key."""

    status_code: int
    response: dict[str, Any]


class KeyInFlight(TailorError):
    """The first request with this key is still being answered."""

    def __init__(self) -> None:
        super().__init__(
            f"a request with this {HEADER} is still in progress; retry later to get its response"
        )


class KeyReused(InvalidInput):
    """The key was used for a request with another body."""

    def __init__(self) -> None:
        super().__init__(
            HEADER,
            "this key was already used with a different request body; use a new key for a "
            "new request (keys are remembered for 24 hours)",
        )


def check_key(key: str) -> None:
    """1-200 printable ASCII characters."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidInput(HEADER, f"must be 1 to {MAX_KEY_LENGTH} characters, not {len(key)}")
    if not all(" " <= c <= "~" for c in key):
        raise InvalidInput(HEADER, "must be printable ASCII (e.g. a UUID)")


def fingerprint(body: bytes) -> str:
    """SHA-256 of the body's canonical JSON (of the bytes themselves if it is not JSON)."""
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except (ValueError, RecursionError):
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


async def claim(
    *,
    session: AsyncSession,
    tenant_id: str,
    key: str,
    route: str,
    body_sha256: str,
    now: datetime,
) -> int | Replay:
    """Claim ``key`` for this request and commit the claim (its id), or the stored answer.

    Raises ``KeyReused`` for another body and ``KeyInFlight`` while the first is being answered.
    Commits ``session``: the claim must be visible to retries before any work begins.
    """
    await delete_claims_before(session=session, before=now - REPLAY_FOR)
    for _ in range(2):  # a second go after taking over an abandoned claim
        new = await insert_claim(
            session=session,
            tenant_id=tenant_id,
            idempotency_key=key,
            route=route,
            body_sha256=body_sha256,
            now=now,
        )
        if new is not None:
            await session.commit()
            assert new.id is not None
            return new.id
        found = await find_claim(session=session, tenant_id=tenant_id, idempotency_key=key,
                                 route=route)  # fmt: skip
        if found is None:  # released in between: claim it now
            continue
        if found.body_sha256 != body_sha256:
            raise KeyReused()
        if found.status_code is not None and found.response is not None:
            return Replay(found.status_code, found.response)
        if found.created_at > now - ABANDONED_AFTER:
            raise KeyInFlight()
        assert found.id is not None
        await delete_claim(session=session, claim_id=found.id)
    raise KeyInFlight()  # lost a race for it twice: someone else holds it now


async def complete(
    *, session: AsyncSession, claim_id: int, status_code: int, response: dict[str, Any]
) -> None:
    """Store the answer to replay, committing it (and the work, if still uncommitted)."""
    await complete_claim(
        session=session, claim_id=claim_id, status_code=status_code, response=response
    )
    await session.commit()


async def release(*, session: AsyncSession, claim_id: int) -> None:
    """Give the key back after a failure; whatever the failed request left uncommitted is
    rolled back first (the request's session would roll it back anyway)."""
    await session.rollback()
    await delete_claim(session=session, claim_id=claim_id)
    await session.commit()
