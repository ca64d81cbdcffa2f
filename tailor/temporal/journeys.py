"""Starting and signalling journeys in Temporal (the API's trigger agent and consent routes)."""

from __future__ import annotations

import logging

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from tailor.config import Settings
from tailor.journeys.definitions import journey_workflow_id
from tailor.payloads import JourneyInput, JourneySignal
from workflows.journey import JourneyWorkflow
from workflows.search_attributes import KIND, TENANT

log = logging.getLogger(__name__)


class JourneyControl:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def trigger(self, journey: JourneyInput, event_name: str) -> str:
        """Signal-with-start: the person's running journey gets the event as a signal; with
        none running, a new run starts with it. Returns the workflow id."""
        workflow_id = journey_workflow_id(journey.tenant_id, journey.journey_key,
                                          journey.contact_id)  # fmt: skip
        await self._client.start_workflow(
            JourneyWorkflow.run,
            journey,
            id=workflow_id,
            task_queue=self._settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal="event",
            start_signal_args=[JourneySignal(event_name, journey.trigger_event_id)],
            search_attributes=(
                TypedSearchAttributes(
                    [
                        SearchAttributePair(TENANT, journey.tenant_id),
                        SearchAttributePair(KIND, "journey"),
                    ]
                )
                if self._settings.temporal_search_attributes
                else None
            ),  # fmt: skip
            static_summary=f"Journey {journey.journey_key} for contact {journey.contact_id} "
            f"(tenant {journey.tenant_id})",
        )
        return workflow_id

    async def forward(self, workflow_ids: list[str], signal: JourneySignal) -> int:
        """An event reaches these journeys of the person's, where running (an exit event ends
        them); returns how many were running."""
        reached = 0
        for workflow_id in workflow_ids:
            handle = self._client.get_workflow_handle_for(JourneyWorkflow.run, workflow_id)
            try:
                await handle.signal(JourneyWorkflow.event, signal)
                reached += 1
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise  # dead-lettered by the trigger agent, replayable
        return reached

    async def revoke_consent(self, workflow_ids: list[str]) -> list[str]:
        """Stop the person's journeys now; returns those reached (the send claim checks the
        ledger anyway, so an unreachable one still sends nothing)."""
        reached: list[str] = []
        for workflow_id in workflow_ids:
            handle = self._client.get_workflow_handle_for(JourneyWorkflow.run, workflow_id)
            try:
                await handle.signal(JourneyWorkflow.revoke_consent)
                reached.append(workflow_id)
            except RPCError as exc:
                log.info("revoke signal to %s not delivered: %s", workflow_id, exc.message)
        return reached
