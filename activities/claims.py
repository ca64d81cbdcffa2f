"""Group commit for delivery claims.

Every message needs its claim committed right before the provider can accept it. Committing one
row at a time costs a transaction per email; here the concurrent SMTP sessions of all chunks in
this worker hand their claims to one batcher, which commits whatever has queued up in a single
statement. A claim still resolves only after its commit, so crash semantics are unchanged.
"""

from __future__ import annotations

import asyncio

from tailor.db import Database
from tailor.store.sends import claim_for_dispatch

MAX_BATCH = 500


class ClaimBatcher:
    def __init__(self, db: Database, provider: str) -> None:
        self._db = db
        self._provider = provider
        self._queue: list[tuple[int, asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None

    async def claim(self, send_id: int) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.append((send_id, future))
        if self._task is None or self._task.done():
            # Runs while claims keep arriving, then ends: nothing lingers after the worker.
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            send_ids = [send_id for send_id, _ in batch]
            try:
                async with self._db.write() as conn:
                    claimed = await claim_for_dispatch(
                        conn, send_ids=send_ids, provider=self._provider
                    )
            except Exception as exc:  # every waiter learns that its claim failed
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for send_id, future in batch:
                if not future.done():
                    future.set_result(send_id in claimed)
