"""Journeys, their runs, trigger rules and dead letters, as the API lists them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from tailor.models import Holdout


class JourneyPublic(BaseModel):
    id: int
    key: str
    version: int
    name: str
    steps: list[dict[str, Any]]
    exit_on: list[str]
    holdout: Holdout | None = None  # its control group, when it keeps one
    created_at: datetime


class JourneysPublic(BaseModel):
    data: list[JourneyPublic]
    count: int


class JourneyRunPublic(BaseModel):
    id: str
    contact_id: int
    journey_key: str
    definition_id: int
    workflow_id: str
    status: str
    reason: str | None
    emails_sent: int
    started_at: datetime
    ended_at: datetime | None


class TriggerRulePublic(BaseModel):
    id: int
    event: str
    journey_key: str
    conditions: dict[str, Any]
    enabled: bool


class TriggerRulesPublic(BaseModel):
    data: list[TriggerRulePublic]
    count: int


class DeadLetterPublic(BaseModel):
    id: int
    event_id: int
    event: str = ""
    contact_id: int | None = None
    message_id: str | None = None
    error: str
    attempts: int
    status: str
    created_at: datetime
    replayed_at: datetime | None


class ReplayPublic(BaseModel):
    id: int
    status: str
    started: list[str]  # journeys started (or signalled) by the event
    forwarded: int  # running journeys told about it
