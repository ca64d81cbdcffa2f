"""The audit log as the API shows it, and the filters a reader may narrow it with."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from api.schemas.base import Strict


class AuditQuery(Strict):
    limit: int = Field(50, ge=1, le=200, description="Entries per page.")
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")
    actor: str | None = Field(None, max_length=200, description="A key id or token subject.")
    route: str | None = Field(
        None, max_length=200, description="A route template, e.g. `/v1/campaigns/{campaign_id}`."
    )
    outcome: Literal["ok", "refused", "failed"] | None = None
    since: AwareDatetime | None = Field(None, description="Entries at or after this time.")
    until: AwareDatetime | None = Field(None, description="Entries before this time.")
    target: str | None = Field(
        None, max_length=200, description="An id the call was about (a path id or a created id)."
    )


class AuditEntryPublic(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="The key id or token subject; `anonymous` without one.")
    actor_kind: str
    role: str
    method: str
    route: str = Field(description="The route's template, not the path called.")
    targets: dict[str, Any] = Field(description="Ids from the path, and ids the call created.")
    status_code: int
    outcome: Literal["ok", "refused", "failed"]
    request_id: str = Field(description="The `X-Request-ID` the response carried.")
    detail: dict[str, Any] = Field(description="Counts and names of changed fields.")
