"""What a revocation promises: no email is claimed for the person after it commits, and the
caller learns whether one was already on its way.

The ledger row and the claims are ordered (``tailor.store.consent.revoke_consent``), so the
sends a revocation finds claimed are all that can still reach the person. They are not called
back (a provider may have the message already); the caller waits a bounded time for them to
settle so that what it answers is what happened: sent (the provider took it and it will
arrive), failed (refused), or still dispatched when the wait ended.
"""

from __future__ import annotations

import asyncio
import time

from tailor.db import Database
from tailor.models import SendStatus
from tailor.store.consent import ClaimedSend, claimed_sends_now

POLL_S = 0.05


async def settle(db: Database, claimed: list[ClaimedSend], *, within_s: float) -> list[ClaimedSend]:
    """The claimed sends as they stand once none is ``dispatched`` any more, or after
    ``within_s`` seconds, whichever comes first."""
    if not claimed:  # nothing was on its way (every grant, most revocations): no query
        return []
    deadline = time.monotonic() + within_s
    ids = [c.send_id for c in claimed]
    while True:
        async with db.read() as conn:
            now = await claimed_sends_now(conn, send_ids=ids)
        unsettled = any(c.status == SendStatus.DISPATCHED for c in now)
        if not unsettled or time.monotonic() >= deadline:
            return now
        await asyncio.sleep(POLL_S)
