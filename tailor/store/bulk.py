"""Loading millions of rows in minutes, for benchmarks: PostgreSQL's COPY (through asyncpg's
``copy_records_to_table``), elsewhere one executemany INSERT per batch.

Values are given as the models hold them (aware datetimes, lists and dicts for JSON) and reach
the table as an ORM insert's would. Ids are handed out by the caller from ``next_id``, so it can
point rows at rows it has just loaded without reading them back; that is only safe in a database
nothing else writes to while it loads, which is what a benchmark has. ``sync_id_sequence`` then
moves PostgreSQL's sequence past them, so the application's own inserts go on working.

On PostgreSQL, checking foreign keys row by row costs more than the rest of a load together;
``foreign_keys_after`` checks them once at the end instead, as ``pg_restore`` does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import Table, func, insert, literal, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tailor.models.base import UTCDateTime


async def next_id(conn: AsyncConnection, *, table: Table) -> int:
    """The first id after every row ``table`` holds."""
    found = await conn.execute(select(func.coalesce(func.max(table.c.id), 0)))
    return int(found.scalar_one()) + 1


async def copy_rows(
    conn: AsyncConnection, *, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Append ``rows`` (values in the order of ``columns``) to ``table``, in the caller's
    transaction."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        await conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    converters = {
        i: convert
        for i, name in enumerate(columns)
        if not isinstance(kind := table.c[name].type, UTCDateTime)  # asyncpg writes the instant
        and (convert := kind.bind_processor(conn.dialect)) is not None
    }
    records: Sequence[Sequence[Any]] = rows
    if converters:
        values: list[Sequence[Any]] = list(zip(*rows, strict=True))  # column by column
        for i, convert in converters.items():
            first = values[i][0]
            if all(v is first for v in values[i]):  # a constant: converted once
                values[i] = [convert(first)] * len(rows)
            else:
                values[i] = [convert(v) for v in values[i]]
        records = list(zip(*values, strict=True))
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if not driver.is_in_transaction():
        await conn.execute(select(literal(1)))  # SQLAlchemy begins its transaction lazily
    try:
        await driver.copy_records_to_table(table.name, columns=list(columns), records=records)
    except asyncpg.IntegrityConstraintViolationError as exc:  # as an INSERT would raise it
        raise IntegrityError(f"COPY {table.name}", None, exc) from exc


async def sync_id_sequence(conn: AsyncConnection, *, table: Table) -> None:
    """After ``copy_rows`` with explicit ids: the next id PostgreSQL hands out is past them."""
    if conn.dialect.name == "postgresql":
        last = select(func.max(table.c.id)).scalar_subquery()
        await conn.execute(select(func.setval(func.pg_get_serial_sequence(table.name, "id"), last)))


@asynccontextmanager
async def foreign_keys_after(
    conn: AsyncConnection, *, tables: Collection[Table]
) -> AsyncIterator[None]:
    """On PostgreSQL, the foreign keys of ``tables`` are dropped for the block and added back
    after it, which checks every row at once. All in the caller's transaction: if anything
    fails, the rollback restores them. Elsewhere, nothing changes."""
    if conn.dialect.name != "postgresql":
        yield
        return
    found = await conn.execute(
        text(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE contype = 'f' AND conrelid::regclass::text = ANY(:tables)"
        ),
        {"tables": [table.name for table in tables]},
    )
    keys = [tuple(row) for row in found]
    quote = conn.dialect.identifier_preparer.quote
    for table, name, _ in keys:
        await conn.execute(text(f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(name)}"))
    yield
    for table, name, definition in keys:
        await conn.execute(
            text(f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} {definition}")
        )
