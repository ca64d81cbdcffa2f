from __future__ import annotations

from fastapi import APIRouter

from api.deps import DatabaseDep
from tailor.store.health import ping

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(db: DatabaseDep) -> dict[str, str]:
    async with db.read() as conn:
        await ping(conn=conn)
    return {"status": "ok"}
