"""What reports read: rollups kept up to date as sends and events happen, and conversions
attributed to the email that earned them.

A report over a million sends must not scan a million rows, so every fact that counts is also
added to a small counter row as it is recorded (``tailor.store.rollups``): one row per campaign,
hour, generation tier, provider and arm (mailed, or held out as the control group). A report
sums a few hundred of these.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tailor.models.base import UTCDateTime, utcnow


class SendRollup(SQLModel, table=True):
    """Counts of what happened in one hour to one campaign's emails of one tier, provider and arm.

    Each counter counts emails (sends), at most once each: ``opened`` is emails opened by a person
    at least once, not opens. Events count in the hour they happened, not the hour of the send.
    """

    __tablename__ = "send_rollup"
    __table_args__ = (sa.Index("ix_send_rollup_tenant_hour", "tenant_id", "hour"),)

    tenant_id: str = Field(primary_key=True, max_length=64)
    campaign_id: str = Field(primary_key=True, max_length=64)
    hour: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    generator: str = Field(default="", primary_key=True, max_length=32)  # "" before generation
    provider: str = Field(default="", primary_key=True, max_length=32)  # "" before delivery
    control: bool = Field(default=False, primary_key=True)
    sent: int = 0  # accepted by a provider
    failed: int = 0  # refused by a provider at send time
    held_out: int = 0  # the control group's emails not sent
    delivered: int = 0  # the provider reported delivery
    bounced: int = 0  # hard bounces reported after acceptance
    soft_bounced: int = 0
    complained: int = 0
    unsubscribed: int = 0
    opened: int = 0  # by a person (machine opens are not counted)
    clicked: int = 0  # by a person
    conversions: int = 0  # orders attributed by last human click
    revenue_cents: int = Field(default=0, sa_type=sa.BigInteger)
    conversions_open: int = 0  # orders attributed by a human open only: the weaker rule
    revenue_open_cents: int = Field(default=0, sa_type=sa.BigInteger)
    ordered: int = 0  # emails followed by an order within the window, clicked or not (for lift)


class Conversion(SQLModel, table=True):
    """One order, and the email it is attributed to (if any): the last email the person clicked
    within the click window, else (``rule`` open, weaker) the last they opened within the open
    window. Stored once per order event."""

    __table_args__ = (
        sa.UniqueConstraint("event_id", name="uq_conversion_event"),
        sa.Index("ix_conversion_campaign", "campaign_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=64, index=True)
    event_id: int = Field(foreign_key="event.id")
    contact_id: int = Field(foreign_key="contact.id")
    send_id: int | None = Field(default=None, foreign_key="send.id")
    campaign_id: str | None = Field(default=None, max_length=64)
    rule: str = Field(max_length=8, description="click, open, or none (not attributed)")
    revenue_cents: int = Field(default=0, sa_type=sa.BigInteger)
    occurred_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class CohortMark(SQLModel, table=True):
    """That a contact opened / clicked / bought in a given week after signing up: the first mark
    of each adds one to ``CohortRollup``."""

    __tablename__ = "cohort_mark"

    contact_id: int = Field(primary_key=True)
    week: int = Field(primary_key=True, ge=0)
    metric: str = Field(primary_key=True, max_length=8)


class CohortRollup(SQLModel, table=True):
    """Contacts who signed up in ``month`` (YYYY-MM) and did ``metric`` in week ``week`` after."""

    __tablename__ = "cohort_rollup"

    tenant_id: str = Field(primary_key=True, max_length=64)
    month: str = Field(primary_key=True, max_length=7)
    week: int = Field(primary_key=True, ge=0)
    metric: str = Field(primary_key=True, max_length=8)
    contacts: int = 0
