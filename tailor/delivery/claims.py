"""Group commit for delivery claims.

Every message needs its claim committed right before the provider can accept it. Committing one
row at a time costs a transaction per email; here the concurrent SMTP sessions of all chunks in
this worker hand their claims to one batcher, which commits whatever has queued up in a single
statement. A claim still resolves only after its commit, so crash semantics are unchanged.

Right after the commit, and before control returns to the event loop, the batcher runs each
claimed send's ``on_claimed`` callback, which writes the SMTP end-of-data line. Doing that
synchronously keeps the window in which a crash could leave a claimed send unsent down to the
microseconds of that loop, rather than the time every session task takes to be scheduled.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

from tailor.db import Database, sqlite_path
from tailor.store.sends import claim_for_dispatch, claim_for_dispatch_sqlite

MAX_BATCH = 500


class ClaimBatcher:
    def __init__(self, db: Database, provider: str) -> None:
        self._db = db
        self._provider = provider
        self._queue: list[tuple[int, asyncio.Future[bool], Callable[[], None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._sqlite: sqlite3.Connection | None = None

    async def claim(self, send_id: int, on_claimed: Callable[[], None]) -> bool:
        """True once the claim is committed and ``on_claimed`` has run; False: do not send.
        An exception from ``on_claimed`` is raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.append((send_id, future, on_claimed))
        if self._task is None or self._task.done():
            # Runs while claims keep arriving, then ends: nothing lingers after the worker.
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            send_ids = [send_id for send_id, _, _ in batch]
            try:
                claimed = self._claim_now(send_ids) if self._db.sqlite else None
                if claimed is not None:
                    self._release(batch, claimed)
                    continue
                async with self._db.writer.connect() as conn:
                    async with conn.begin():
                        claimed = await claim_for_dispatch(
                            conn, send_ids=send_ids, provider=self._provider
                        )
                    # Committed: release before anything else, even returning the connection.
                    self._release(batch, claimed)
            except Exception as exc:  # every waiter still waiting learns its claim failed
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)

    def _claim_now(self, send_ids: list[int]) -> set[int] | None:
        """SQLite only: claim on this thread, with no await between the commit and the
        end-of-data writes. None when another writer holds the lock right now (waiting here
        would block the event loop, and with it that writer's own transaction)."""
        if self._sqlite is None:
            self._sqlite = sqlite3.connect(
                sqlite_path(self._db.url), timeout=0, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
            self._sqlite.execute("PRAGMA synchronous=NORMAL")  # as the engines use (WAL)
        try:
            self._sqlite.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None
            raise
        try:
            claimed = claim_for_dispatch_sqlite(self._sqlite, send_ids, self._provider)
            self._sqlite.execute("COMMIT")
        except BaseException:
            self._sqlite.execute("ROLLBACK")
            raise
        return claimed

    @staticmethod
    def _release(
        batch: list[tuple[int, asyncio.Future[bool], Callable[[], None]]], claimed: set[int]
    ) -> None:
        # No await in this loop: every end-of-data goes out before anything else runs.
        for send_id, future, on_claimed in batch:
            if future.done():
                continue
            if send_id not in claimed:
                future.set_result(False)
                continue
            try:
                on_claimed()
            except Exception as exc:
                future.set_exception(exc)
            else:
                future.set_result(True)
