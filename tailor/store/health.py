"""Whether the store answers at all (the API's health check)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def ping(*, conn: AsyncConnection) -> None:
    """A round trip to the database; raises if it cannot answer."""
    await conn.execute(text("SELECT 1"))
