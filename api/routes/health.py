from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import DatabaseDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(db: DatabaseDep) -> dict[str, str]:
    async with db.read() as conn:
        await conn.execute(text("SELECT 1"))
    return {"status": "ok"}
