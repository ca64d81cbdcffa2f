"""Engines, sessions and migrations for SQLite (the embedded default) and PostgreSQL.

SQLite needs care to be safe under the several processes Tailor runs (API, worker, CLI): WAL so
readers never block the writer, a busy timeout, and ``BEGIN IMMEDIATE`` for write transactions so
two writers queue on the lock instead of failing with SQLITE_BUSY when one upgrades a read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from tailor.observability import tracing
from tailor.observability.metrics import DB_QUERIES

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
T = TypeVar("T")


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> str:
    path = make_url(url).database
    if not path:
        raise ValueError(f"not a SQLite file URL: {url}")
    return path


def _sqlite_engine(url: str, *, immediate: bool) -> AsyncEngine:
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the driver so that "begin" below decides.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


_OPERATIONS = {"select", "insert", "update", "delete"}


def _timed(engine: Engine) -> None:
    """Observe each statement's latency in ``tailor_db_query_duration_seconds`` (its kind
    only: never its text or parameters)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _started(
        _conn: Any, _cursor: Any, _sql: str, _params: Any, context: Any, _many: bool
    ) -> None:
        if context is not None:
            context._tailor_started = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _finished(
        _conn: Any, _cursor: Any, sql: str, _params: Any, context: Any, _many: bool
    ) -> None:
        started = getattr(context, "_tailor_started", None)
        if started is None:
            return
        verb = sql.lstrip()[:6].lower()
        DB_QUERIES.labels(verb if verb in _OPERATIONS else "other").observe(
            time.perf_counter() - started
        )


class Database:
    """A reader and a writer engine. On PostgreSQL they are the same engine."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        self._quick: Engine | None = None  # SQLite: sqlite_read_in_thread's
        if self.sqlite:
            self.writer = _sqlite_engine(url, immediate=True)
            self.reader = _sqlite_engine(url, immediate=False)
        else:
            self.writer = create_async_engine(url, pool_size=10, max_overflow=10)
            self.reader = self.writer
        traced = tracing.active()
        for engine in {self.writer, self.reader}:
            _timed(engine.sync_engine)
            if traced is not None:
                traced.instrument_engine(engine.sync_engine)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A write session: commits on success, rolls back everything on error."""
        async with AsyncSession(self.writer, expire_on_commit=False) as session:
            async with session.begin():
                yield session

    @asynccontextmanager
    async def request_session(self) -> AsyncIterator[AsyncSession]:
        """A write session for one API request: committed if the block returns, rolled back if
        it raises. Unlike ``session()``, the holder may commit early (e.g. before it calls
        Temporal) and go on using it; the next statement begins a new transaction."""
        async with AsyncSession(self.writer, expire_on_commit=False) as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        async with AsyncSession(self.reader, expire_on_commit=False) as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in one write transaction (hot paths that skip the ORM)."""
        async with self.writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def autocommit_read(self) -> AsyncIterator[AsyncConnection]:
        """A connection outside any transaction, for a short read a request waits on: on
        PostgreSQL, no BEGIN and ROLLBACK round trips around it."""
        async with self.reader.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    async def sqlite_read_in_thread(self, read: Callable[[Connection], T]) -> T:
        """``read`` on a plain (not asyncio) SQLite connection, in a thread: for a short read a
        request waits on. aiosqlite hands every step (begin, cursor, execute, fetch, close,
        rollback) to its thread and back, and each hand-back waits its turn on a busy event loop;
        this is one hand-over each way. Outside a transaction, so it sees the latest commit."""
        if self._quick is None:
            self._quick = create_engine(
                make_url(self.url).set(drivername="sqlite"),
                connect_args={"timeout": 60, "check_same_thread": False},
            )

        def run() -> T:
            assert self._quick is not None
            with self._quick.connect() as conn:
                return read(conn)

        return await asyncio.to_thread(run)

    async def dispose(self) -> None:
        if self._quick is not None:
            self._quick.dispose()
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _upgrade(url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), "head")


async def migrate(url: str) -> None:
    """Bring the schema to the latest migration. Safe to call on every start."""
    if is_sqlite(url):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Alembic's env.py runs its own event loop; give it a thread of its own.
    await asyncio.to_thread(_upgrade, url)
