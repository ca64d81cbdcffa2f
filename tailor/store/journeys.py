"""Journey definitions (versioned), trigger rules, runs and dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from tailor.errors import InvalidInput, NotFound
from tailor.journeys.definitions import (
    BUILTIN_JOURNEYS,
    BUILTIN_RULES,
    JourneySpec,
    RuleSpec,
    SendStep,
    step_campaign_id,
)
from tailor.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    DeadLetter,
    DeadLetterStatus,
    Event,
    HoldoutTreatment,
    JourneyDefinition,
    JourneyRun,
    JourneyStatus,
    Send,
    Template,
    TemplateVersion,
    Tenant,
    TriggerRule,
    utcnow,
)
from tailor.store.campaigns import DELIVERED
from tailor.store.keyset import TimeKey, below, older_than
from tailor.store.templates import get_version


async def _template_for(session: AsyncSession, tenant: Tenant, step: SendStep) -> int:
    """The step's template, else the tenant's default, else the tenant's newest version."""
    wanted = step.template_version_id or tenant.default_template_version_id
    if wanted is not None:
        try:
            await get_version(session=session, tenant_id=tenant.id, version_id=wanted)
        except NotFound as exc:
            raise InvalidInput(
                "steps.template_version_id", f"no template version {wanted}"
            ) from exc
        return wanted
    newest = await session.execute(
        select(func.max(TemplateVersion.id))
        .join(Template, col(Template.id) == col(TemplateVersion.template_id))
        .where(col(Template.tenant_id) == tenant.id)
    )
    version_id: int | None = newest.scalar()
    if version_id is None:
        raise InvalidInput(
            "steps", "the tenant has no template yet: create one (PUT /v1/templates/...) first"
        )
    return version_id


async def create_definition(
    *, session: AsyncSession, tenant_id: str, spec: JourneySpec
) -> JourneyDefinition:
    """The next version of a journey. Each send step gets its own campaign row, so its sends
    are idempotent per run and its analytics read like any campaign's; the journey's holdout is
    on each of them (and recorded on each send step)."""
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("tenant", tenant_id)
    latest = await session.execute(
        select(func.max(JourneyDefinition.version)).where(
            col(JourneyDefinition.tenant_id) == tenant_id, col(JourneyDefinition.key) == spec.key
        )
    )
    version = (latest.scalar() or 0) + 1
    steps: list[dict[str, Any]] = []
    for step in spec.steps:
        data = step.model_dump()
        if isinstance(step, SendStep):
            campaign_id = step_campaign_id(tenant_id, spec.key, version, step.name)
            data["template_version_id"] = await _template_for(session, tenant, step)
            data["campaign_id"] = campaign_id
            holdout = spec.holdout
            if holdout is not None:
                data["holdout"] = holdout.model_dump(mode="json")
            session.add(
                Campaign(
                    id=campaign_id,
                    tenant_id=tenant_id,
                    name=f"{spec.name} v{version}: {step.name}",
                    template_version_id=data["template_version_id"],
                    kind=CampaignKind.JOURNEY,
                    goal=step.goal,
                    status=CampaignStatus.RUNNING,
                    # The holdout's salt (``tailor.holdout.salt_for``): one per journey.
                    workflow_id=f"journey-{tenant_id}-{spec.key}-*",
                    holdout_fraction=holdout.fraction if holdout else 0.0,
                    holdout_treatment=holdout.treatment if holdout else HoldoutTreatment.NONE,
                )
            )
        steps.append(data)
    definition = JourneyDefinition(
        tenant_id=tenant_id, key=spec.key, version=version, name=spec.name,
        steps=steps, exit_on=list(spec.exit_on),
    )  # fmt: skip
    session.add(definition)
    await session.flush()
    return definition


async def latest_definition(
    conn: AsyncConnection, *, tenant_id: str, key: str
) -> JourneyDefinition | None:
    row = await conn.execute(
        select(JourneyDefinition)
        .where(col(JourneyDefinition.tenant_id) == tenant_id, col(JourneyDefinition.key) == key)
        .order_by(col(JourneyDefinition.version).desc())
        .limit(1)
    )
    found = row.first()
    if found is None:
        return None
    return JourneyDefinition.model_validate(dict(found._mapping))


async def latest_definitions(*, session: AsyncSession, tenant_id: str) -> list[JourneyDefinition]:
    newest = (
        select(func.max(JourneyDefinition.id))
        .where(col(JourneyDefinition.tenant_id) == tenant_id)
        .group_by(col(JourneyDefinition.key))
    )
    rows = await session.execute(
        select(JourneyDefinition)
        .where(col(JourneyDefinition.id).in_(newest))
        .order_by(col(JourneyDefinition.key))
    )
    return list(rows.scalars())


async def create_rule(*, session: AsyncSession, tenant_id: str, spec: RuleSpec) -> TriggerRule:
    rule = TriggerRule(tenant_id=tenant_id, event=spec.event, journey_key=spec.journey_key,
                       conditions=spec.conditions())  # fmt: skip
    session.add(rule)
    await session.flush()
    return rule


async def list_rules(*, session: AsyncSession, tenant_id: str) -> list[TriggerRule]:
    rows = await session.execute(
        select(TriggerRule)
        .where(col(TriggerRule.tenant_id) == tenant_id)
        .order_by(col(TriggerRule.id))
    )
    return list(rows.scalars())


async def install_builtins(*, session: AsyncSession, tenant_id: str) -> list[str]:
    """The built-in journeys and their trigger rules, for those the tenant lacks; returns the
    journey keys installed. Safe to repeat."""
    installed: list[str] = []
    for spec in BUILTIN_JOURNEYS:
        if (
            await latest_definition(await session.connection(), tenant_id=tenant_id, key=spec.key)
            is None
        ):
            await create_definition(session=session, tenant_id=tenant_id, spec=spec)
            installed.append(spec.key)
    existing = {(r.event, r.journey_key) for r in await list_rules(session=session,
                                                                  tenant_id=tenant_id)}  # fmt: skip
    for rule in BUILTIN_RULES:
        if (rule.event, rule.journey_key) not in existing:
            await create_rule(session=session, tenant_id=tenant_id, spec=rule)
    return installed


async def rules_for(
    conn: AsyncConnection, *, tenant_id: str, events: set[str]
) -> list[TriggerRule]:
    rows = await conn.execute(
        select(TriggerRule).where(
            col(TriggerRule.tenant_id) == tenant_id,
            col(TriggerRule.event).in_(events),
            col(TriggerRule.enabled),
        )
    )
    return [TriggerRule.model_validate(r) for r in rows.mappings()]


async def tenants_with_rules(conn: AsyncConnection, *, events: Sequence[str]) -> set[str]:
    """Tenants with an enabled trigger rule for any of these events."""
    rows = await conn.execute(
        select(TriggerRule.tenant_id).where(  # type: ignore[call-overload]
            col(TriggerRule.event).in_(events), col(TriggerRule.enabled)
        )
    )
    return set(rows.scalars())


async def event_counts(
    conn: AsyncConnection,
    *,
    contact_id: int,
    names: Sequence[str],
    since: datetime,
    until: datetime,
) -> dict[str, int]:
    """How often the person did each of these events in [since, until]."""
    rows = await conn.execute(
        select(Event.type, func.count())  # type: ignore[call-overload]
        .where(
            col(Event.contact_id) == contact_id,
            col(Event.type).in_(list(names)),
            col(Event.occurred_at) >= since,
            col(Event.occurred_at) <= until,
        )
        .group_by(col(Event.type))
    )
    return dict(rows.all())


async def journey_keys(conn: AsyncConnection | AsyncSession, *, tenant_id: str,
                       exit_on: str | None = None) -> list[str]:  # fmt: skip
    """The tenant's journey keys; with ``exit_on``, those any version of which that event ends.
    (Journeys are addressed by key: their workflow ids are deterministic.)"""
    rows = await conn.execute(
        select(JourneyDefinition.key, JourneyDefinition.exit_on).where(  # type: ignore[call-overload]
            col(JourneyDefinition.tenant_id) == tenant_id
        )
    )
    keys = {key for key, ends in rows.all() if exit_on is None or exit_on in (ends or [])}
    return sorted(keys)


# --- runs -------------------------------------------------------------------------------------


async def record_run(conn: AsyncConnection, *, run: JourneyRun) -> None:
    """Idempotent: a retried start finds its row."""
    if await conn.scalar(select(col(JourneyRun.id)).where(col(JourneyRun.id) == run.id)) is None:
        await conn.execute(JourneyRun.__table__.insert().values(**run.model_dump()))  # type: ignore[attr-defined]


async def trigger_timing(
    conn: AsyncConnection, *, run_id: str
) -> tuple[datetime, list[dict[str, Any]]] | None:
    """When the event that started the run reached Tailor, and the steps of the run's journey
    version; None for a run that predates the record or whose event was erased."""
    row = (
        await conn.execute(
            select(col(Event.received_at), col(JourneyDefinition.steps))
            .select_from(JourneyRun)
            .join(Event, col(Event.id) == col(JourneyRun.trigger_event_id))
            .join(JourneyDefinition, col(JourneyDefinition.id) == col(JourneyRun.definition_id))
            .where(col(JourneyRun.id) == run_id)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def finish_run(
    conn: AsyncConnection, *, run_id: str, status: str, reason: str, emails_sent: int
) -> None:
    await conn.execute(
        update(JourneyRun)
        .where(col(JourneyRun.id) == run_id)
        .values(status=status, reason=reason[:200], emails_sent=emails_sent, ended_at=utcnow())
    )


async def list_runs(
    *,
    session: AsyncSession,
    tenant_id: str,
    contact_id: int | None,
    after: TimeKey | None,
    limit: int,
) -> list[JourneyRun]:
    """A keyset page of the tenant's journey runs, newest first (``tailor.store.keyset``)."""
    query = select(JourneyRun).where(
        col(JourneyRun.tenant_id) == tenant_id,
        older_than(col(JourneyRun.started_at), col(JourneyRun.id), after),
    )
    if contact_id is not None:
        query = query.where(col(JourneyRun.contact_id) == contact_id)
    newest = (col(JourneyRun.started_at).desc(), col(JourneyRun.id).desc())
    rows = await session.execute(query.order_by(*newest).limit(limit))
    runs = list(rows.scalars())
    # A running journey's emails so far are its delivered sends (their occurrence is the run).
    running = [r.id for r in runs if r.status == JourneyStatus.RUNNING]
    if running:
        counts: dict[str, int] = dict(
            (
                await session.execute(
                    select(Send.occurrence, func.count())  # type: ignore[call-overload]
                    .where(
                        col(Send.occurrence).in_(running),
                        col(Send.status).in_(DELIVERED),
                    )
                    .group_by(col(Send.occurrence))
                )
            ).all()
        )
        # Copies, not the session's rows: a read must not write them back.
        runs = [
            JourneyRun.model_validate({**r.model_dump(), "emails_sent": counts[r.id]})
            if r.id in counts
            else r
            for r in runs
        ]
    return runs


# --- dead letters -----------------------------------------------------------------------------


async def add_dead_letter(
    conn: AsyncConnection, *, tenant_id: str, event_id: int, error: str
) -> None:
    """Record (or re-record, counting attempts) an event whose trigger processing failed."""
    found = await conn.scalar(
        select(col(DeadLetter.id)).where(col(DeadLetter.event_id) == event_id)
    )
    if found is None:
        await conn.execute(
            DeadLetter.__table__.insert().values(  # type: ignore[attr-defined]
                tenant_id=tenant_id,
                event_id=event_id,
                error=error[:1000],
                attempts=1,
                status=DeadLetterStatus.OPEN,
                created_at=utcnow(),
            )  # fmt: skip
        )
    else:
        await conn.execute(
            update(DeadLetter)
            .where(col(DeadLetter.id) == found)
            .values(
                error=error[:1000],
                attempts=col(DeadLetter.attempts) + 1,
                status=DeadLetterStatus.OPEN,
            )  # fmt: skip
        )


@dataclass(frozen=True)
class FailedEvent:
    """A dead letter and the event whose trigger processing failed."""

    letter: DeadLetter
    event: Event


async def list_dead_letters(
    *, session: AsyncSession, tenant_id: str, status: str | None, after: int | None, limit: int
) -> list[FailedEvent]:
    """A keyset page of the tenant's dead letters, newest first (``tailor.store.keyset``)."""
    query = (
        select(DeadLetter, Event)
        .join(Event, col(Event.id) == col(DeadLetter.event_id))
        .where(col(DeadLetter.tenant_id) == tenant_id, below(col(DeadLetter.id), after))
    )
    if status is not None:
        query = query.where(col(DeadLetter.status) == status)
    rows = await session.execute(query.order_by(col(DeadLetter.id).desc()).limit(limit))
    return [FailedEvent(d, e) for d, e in rows.all()]


async def get_dead_letter(
    *, session: AsyncSession, tenant_id: str, dead_letter_id: int
) -> FailedEvent:
    row = (
        await session.execute(
            select(DeadLetter, Event)
            .join(Event, col(Event.id) == col(DeadLetter.event_id))
            .where(col(DeadLetter.id) == dead_letter_id, col(DeadLetter.tenant_id) == tenant_id)
        )
    ).first()
    if row is None:
        raise NotFound("dead letter", dead_letter_id)
    return FailedEvent(row[0], row[1])


async def mark_replayed(conn: AsyncConnection, *, event_id: int) -> None:
    await conn.execute(
        update(DeadLetter)
        .where(col(DeadLetter.event_id) == event_id)
        .values(status=DeadLetterStatus.REPLAYED, replayed_at=utcnow())
    )


@dataclass(frozen=True, slots=True)
class JourneyEmailCampaign:
    version: int
    step: str
    campaign_id: str


async def journey_email_campaigns(
    *, session: AsyncSession, tenant_id: str, key: str
) -> list[JourneyEmailCampaign]:
    """Every version's send steps of a journey and the campaign each sends on, oldest first."""
    rows = await session.execute(
        select(JourneyDefinition)
        .where(col(JourneyDefinition.tenant_id) == tenant_id, col(JourneyDefinition.key) == key)
        .order_by(col(JourneyDefinition.version))
    )
    return [
        JourneyEmailCampaign(d.version, str(step["name"]), str(step["campaign_id"]))
        for d in rows.scalars()
        for step in d.steps
        if step.get("campaign_id")
    ]
