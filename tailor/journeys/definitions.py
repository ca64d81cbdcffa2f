"""Journey definitions as data: what a journey sends and waits for, and what triggers it.

A definition is a list of steps (``send`` an email with a goal, ``wait`` a while) and the
events that end it early. Definitions are versioned in the store; a running journey keeps the
version it started with. The built-ins below are installed per tenant on request and are the
starting point marketers edit.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tailor.models.base import MAX_ROW_ID
from tailor.models.campaigns import Holdout

# Goals the rules tier has copy for (``JOURNEY_COPY`` in ``tailor/personalise/rules.py``); a send
# step names one.
GOALS = (
    "welcome_1",
    "welcome_2",
    "welcome_3",
    "cart_reminder",
    "re_engagement_1",
    "re_engagement_2",
    "milestone",
)


# What each goal is for: the brief an LLM writes to, and the exemplar goal retrieval uses.
GOAL_BRIEFS: dict[str, tuple[str, str]] = {
    "welcome_1": ("welcome email 1 of 3: greet a new subscriber, show the best of the shop",
                  "welcome"),
    "welcome_2": ("welcome email 2 of 3: what regulars buy most in their category", "welcome"),
    "welcome_3": ("welcome email 3 of 3: invite them to set their preferences", "welcome"),
    "cart_reminder": ("cart reminder: the reader left {{cart_item}} in their cart",
                      "cart_abandonment"),
    "re_engagement_1": ("win back a reader who has not opened in a month", "re_engagement"),
    "re_engagement_2": ("last email before pausing: ask whether to keep writing",
                        "re_engagement"),
    "milestone": ("celebrate a customer milestone and thank them", "milestone"),
}  # fmt: skip


def goal_brief(goal: str) -> tuple[str, str]:
    """(brief, exemplar goal) for a journey goal, occasion included ("milestone:birthday")."""
    base, _, occasion = goal.partition(":")
    brief, exemplar_goal = GOAL_BRIEFS.get(base, (base, "promo"))
    return (f"{brief} ({occasion.replace('_', ' ')})" if occasion else brief), exemplar_goal


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SendStep(_Strict):
    type: Literal["send"] = "send"
    name: str = Field(min_length=1, max_length=60, examples=["welcome-1"])
    goal: Literal[GOALS]  # type: ignore[valid-type]
    template_version_id: int | None = Field(
        None,
        ge=1,
        le=MAX_ROW_ID,
        description="Template to render; default: the tenant's default template.",
    )
    send_time: Literal["now", "best_hour"] = Field(
        "now", description="best_hour: wait for the reader's best local hour to send."
    )


class WaitStep(_Strict):
    type: Literal["wait"] = "wait"
    minutes: int = Field(ge=0, le=60 * 24 * 365)


Step = Annotated[SendStep | WaitStep, Field(discriminator="type")]


class JourneySpec(_Strict):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$", examples=["welcome"])
    name: str = Field(min_length=1, max_length=150)
    steps: list[Step] = Field(min_length=1, max_length=50)
    exit_on: list[str] = Field(default_factory=list, max_length=20)
    holdout: Holdout | None = Field(
        None,
        description="A control group kept out of the journey's emails (or sent the plain "
        "ones), to measure its lift: the same people for every step and version.",
    )

    @model_validator(mode="after")
    def _sends_something(self) -> JourneySpec:
        if not any(isinstance(s, SendStep) for s in self.steps):
            raise ValueError("a journey needs at least one send step")
        names = [s.name for s in self.steps if isinstance(s, SendStep)]
        if len(names) != len(set(names)):
            raise ValueError("send step names must be unique within a journey")
        return self


class RuleSpec(_Strict):
    """An event that starts (or, while it runs, signals) a journey, and its conditions over
    the person's last 7 days of events and their features."""

    event: str = Field(min_length=1, max_length=100, examples=["cart.abandoned"])
    journey_key: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    # No start if any of these events happened within ``unless_within_hours`` before it.
    unless: list[str] = Field(default_factory=list, max_length=20)
    unless_within_hours: int = Field(24, ge=1, le=7 * 24)
    # Start only once the event happened this many times in 7 days (e.g. 3 visits).
    min_count: int = Field(1, ge=1, le=1000)
    # Start only when the person's order count is one of these (milestones: 1st, 5th order).
    order_count_in: list[Annotated[int, Field(ge=1, le=MAX_ROW_ID)]] = Field(
        default_factory=list, max_length=20
    )

    def conditions(self) -> dict[str, Any]:
        return self.model_dump(exclude={"event", "journey_key"})


def step_campaign_id(tenant_id: str, key: str, version: int, step_name: str) -> str:
    """The campaign row a journey email's sends and analytics hang off (ids stay < 64)."""
    digest = hashlib.sha256(f"{tenant_id}|{key}|{version}|{step_name}".encode()).hexdigest()
    return f"jrn_{digest[:24]}"


def journey_workflow_id(tenant_id: str, key: str, contact_id: int) -> str:
    """Deterministic: a second trigger for the same person and journey finds the running one."""
    return f"journey-{tenant_id}-{key}-{contact_id}"


HOUR = 60
DAY = 24 * HOUR

BUILTIN_JOURNEYS: tuple[JourneySpec, ...] = (
    JourneySpec(
        key="welcome",
        name="Welcome series",
        steps=[
            SendStep(name="welcome-1", goal="welcome_1"),
            WaitStep(minutes=2 * DAY),
            SendStep(name="welcome-2", goal="welcome_2", send_time="best_hour"),
            WaitStep(minutes=3 * DAY),
            SendStep(name="welcome-3", goal="welcome_3", send_time="best_hour"),
        ],
    ),
    JourneySpec(
        key="cart_abandonment",
        name="Cart abandonment",
        steps=[WaitStep(minutes=HOUR), SendStep(name="cart-reminder", goal="cart_reminder")],
        exit_on=["order.completed"],
    ),
    JourneySpec(
        key="re_engagement",
        name="Re-engagement",
        steps=[
            SendStep(name="we-miss-you", goal="re_engagement_1", send_time="best_hour"),
            WaitStep(minutes=4 * DAY),
            SendStep(name="last-call", goal="re_engagement_2", send_time="best_hour"),
        ],
        exit_on=["email.opened", "email.clicked", "order.completed"],
    ),
    JourneySpec(
        key="milestone",
        name="Milestones",
        steps=[SendStep(name="milestone", goal="milestone", send_time="best_hour")],
    ),
)

BUILTIN_RULES: tuple[RuleSpec, ...] = (
    RuleSpec(event="signed.up", journey_key="welcome"),
    RuleSpec(
        event="cart.abandoned",
        journey_key="cart_abandonment",
        unless=["order.completed"],
        unless_within_hours=1,
    ),  # fmt: skip
    # Emitted by the daily features job for people with no open in 30 days.
    RuleSpec(event="engagement.lapsed", journey_key="re_engagement"),
    RuleSpec(event="milestone.birthday", journey_key="milestone"),
    RuleSpec(event="milestone.anniversary", journey_key="milestone"),
    RuleSpec(event="order.completed", journey_key="milestone", order_count_in=[1, 5, 10, 25]),
)
