"""A journey run's record: started with the definition version it keeps, finished with why."""

from __future__ import annotations

from tailor.db import Database
from tailor.errors import TailorError
from tailor.models import ConsentStatus, JourneyDefinition, JourneyRun
from tailor.payloads import JourneyEnd, JourneyPlan, JourneyStart, JourneyStepPlan
from tailor.store.consent import current_consent
from tailor.store.journeys import finish_run, latest_definition, record_run


class JourneyNotDefined(TailorError):
    def __init__(self, tenant_id: str, journey_key: str) -> None:
        super().__init__(
            f"journey {journey_key!r} is not defined for tenant {tenant_id!r}: "
            "install it (POST /v1/journeys/builtins)"
        )


async def start_run(db: Database, start: JourneyStart) -> JourneyPlan:
    """Pin the definition version this run keeps, and record the run."""
    journey = start.journey
    async with db.write() as conn:
        definition = await latest_definition(
            conn, tenant_id=journey.tenant_id, key=journey.journey_key
        )
        if definition is None or definition.id is None:
            raise JourneyNotDefined(journey.tenant_id, journey.journey_key)
        await record_run(
            conn,
            run=JourneyRun(
                id=start.run_id, tenant_id=journey.tenant_id, contact_id=journey.contact_id,
                journey_key=journey.journey_key, definition_id=definition.id,
                workflow_id=start.workflow_id, trigger_event_id=journey.trigger_event_id,
            ),
        )  # fmt: skip
        consent = await current_consent(conn, contact_ids=[journey.contact_id])
    return plan_of(definition, consent.get(journey.contact_id) == ConsentStatus.GRANTED)


async def end_run(db: Database, end: JourneyEnd) -> None:
    async with db.write() as conn:
        await finish_run(
            conn,
            run_id=end.run_id,
            status=end.status,
            reason=end.reason,
            emails_sent=end.emails_sent,
        )


def plan_of(definition: JourneyDefinition, consented: bool) -> JourneyPlan:
    steps = [
        JourneyStepPlan(kind="send", name=s["name"], campaign_id=s["campaign_id"],
                        send_time=s.get("send_time", "now"))
        if s["type"] == "send"
        else JourneyStepPlan(kind="wait", minutes=int(s["minutes"]))
        for s in definition.steps
    ]  # fmt: skip
    return JourneyPlan(definition.id or 0, definition.version, steps, list(definition.exit_on),
                       consented)  # fmt: skip
