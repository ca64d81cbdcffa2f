"""Journeys: versioned definitions, trigger rules, runs, and events that failed to trigger."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tailor.models.base import UTCDateTime, json_field, utcnow


class JourneyStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # every step ran
    EXITED = "exited"  # an exit event (a purchase, an open) ended it early
    STOPPED = "stopped"  # consent revoked


class DeadLetterStatus(StrEnum):
    OPEN = "open"
    REPLAYED = "replayed"


class JourneyDefinition(SQLModel, table=True):
    """One version of a journey: its steps as data (``tailor.journeys.definitions``). Immutable:
    an edit is a new version, and a running journey keeps the version it started with."""

    __tablename__ = "journey_definition"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "key", "version", name="uq_journey_definition_version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    key: str = Field(max_length=64, description="welcome, cart_abandonment, ...")
    version: int = Field(ge=1)
    name: str = Field(max_length=200)
    steps: list[dict[str, Any]] = json_field()
    exit_on: list[str] = json_field()  # events that end a running journey (a purchase, an open)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class TriggerRule(SQLModel, table=True):
    """Maps an event to a journey, with conditions over the person's last 7 days of events."""

    __tablename__ = "trigger_rule"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    event: str = Field(max_length=100)
    journey_key: str = Field(max_length=64)
    conditions: dict[str, Any] = json_field(dict)
    enabled: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class JourneyRun(SQLModel, table=True):
    """One run of a journey for one person (a Temporal workflow run)."""

    __tablename__ = "journey_run"
    __table_args__ = (sa.Index("ix_journey_run_contact_status", "contact_id", "status"),)

    id: str = Field(primary_key=True, max_length=64, description="The workflow run id.")
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    contact_id: int = Field(foreign_key="contact.id")
    journey_key: str = Field(max_length=64)
    definition_id: int = Field(foreign_key="journey_definition.id")
    workflow_id: str = Field(max_length=200)
    status: str = Field(default=JourneyStatus.RUNNING, max_length=16)
    reason: str | None = Field(default=None, max_length=200)
    emails_sent: int = Field(default=0)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # No foreign key: an erased person's events go, the run's record stays.
    trigger_event_id: int | None = Field(
        default=None, description="The event that started the run (none before 2026-12)."
    )


class DeadLetter(SQLModel, table=True):
    """An event whose trigger processing failed; listed and replayed through the API."""

    __tablename__ = "dead_letter"
    __table_args__ = (sa.Index("ix_dead_letter_tenant_status", "tenant_id", "status", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64)
    event_id: int = Field(foreign_key="event.id", unique=True)
    error: str = Field(max_length=1000)
    attempts: int = Field(default=1)
    status: str = Field(default=DeadLetterStatus.OPEN, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    replayed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
