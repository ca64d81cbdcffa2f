"""Group commit for delivery claims.

Every message needs its claim committed right before the provider can accept it. Committing one
row at a time costs a transaction per email; here the concurrent SMTP sessions of all chunks in
this worker hand their claims to one batcher, which commits whatever has queued up in a single
statement. A claim still resolves only after its commit, so crash semantics are unchanged.

Right after the commit, and before control returns to the event loop, the batcher runs each
claimed send's ``on_claimed`` callback, which writes the SMTP end-of-data line. Doing that
synchronously keeps the window in which a crash could leave a claimed send unsent down to the
microseconds of that loop, rather than the time every session task takes to be scheduled.

A claim carries the email's tracked links, stored in the claim's transaction: a click on an
email the provider has taken always finds where to redirect, even before it is recorded sent.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from tailor.db import Database, sqlite_path
from tailor.store.sends import claim_for_dispatch, claim_for_dispatch_sqlite

MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class _Claim:
    send_id: int
    future: asyncio.Future[bool]
    on_claimed: Callable[[], None]
    links: list[str] | None  # the email's tracked links, stored with the claim


class ClaimBatcher:
    def __init__(self, db: Database, provider: str) -> None:
        self._db = db
        self._provider = provider
        self._queue: list[_Claim] = []
        self._task: asyncio.Task[None] | None = None
        self._sqlite: sqlite3.Connection | None = None

    async def claim(
        self, send_id: int, on_claimed: Callable[[], None], links: list[str] | None = None
    ) -> bool:
        """True once the claim (and the email's tracked ``links``) is committed and
        ``on_claimed`` has run; False: do not send. An exception from ``on_claimed`` is raised
        here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.append(_Claim(send_id, future, on_claimed, links))
        if self._task is None or self._task.done():
            # Runs while claims keep arriving, then ends: nothing lingers after the worker.
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            send_ids = [c.send_id for c in batch]
            links = {c.send_id: c.links for c in batch if c.links is not None}
            try:
                claimed = self._claim_now(send_ids, links) if self._db.sqlite else None
                if claimed is not None:
                    self._release(batch, claimed)
                    continue
                async with self._db.writer.connect() as conn:
                    async with conn.begin():
                        claimed = await claim_for_dispatch(
                            conn, send_ids=send_ids, provider=self._provider, links=links
                        )
                    # Committed: release before anything else, even returning the connection.
                    self._release(batch, claimed)
            except Exception as exc:  # every waiter still waiting learns its claim failed
                for c in batch:
                    if not c.future.done():
                        c.future.set_exception(exc)

    def _claim_now(self, send_ids: list[int], links: dict[int, list[str]]) -> set[int] | None:
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
            claimed = claim_for_dispatch_sqlite(self._sqlite, send_ids, self._provider, links)
            self._sqlite.execute("COMMIT")
        except BaseException:
            self._sqlite.execute("ROLLBACK")
            raise
        return claimed

    @staticmethod
    def _release(batch: list[_Claim], claimed: set[int]) -> None:
        # No await in this loop: every end-of-data goes out before anything else runs.
        for c in batch:
            if c.future.done():
                continue
            if c.send_id not in claimed:
                c.future.set_result(False)
                continue
            try:
                c.on_claimed()
            except Exception as exc:
                c.future.set_exception(exc)
            else:
                c.future.set_result(True)
