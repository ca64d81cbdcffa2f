"""Starting a person's erasure workflow (the API's ``DELETE /v1/contacts/{id}``)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy

from tailor.config import Settings
from tailor.models import Erasure
from tailor.payloads import ErasureInput
from workflows.erasure import ErasureWorkflow, erasure_workflow_id
from workflows.search_attributes import KIND, TENANT


class ErasureControl:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def start(self, erasure: Erasure) -> str:
        """Start it, or join the run already going (a DELETE asked again); its workflow id."""
        workflow_id = erasure_workflow_id(erasure.tenant_id, erasure.contact_id)
        await self._client.start_workflow(
            ErasureWorkflow.run,
            ErasureInput(erasure.id, erasure.tenant_id, erasure.contact_id),
            id=workflow_id,
            task_queue=self._settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=(
                TypedSearchAttributes(
                    [
                        SearchAttributePair(TENANT, erasure.tenant_id),
                        SearchAttributePair(KIND, "erasure"),
                    ]
                )
                if self._settings.temporal_search_attributes
                else None
            ),  # fmt: skip
            static_summary=f"Erasure {erasure.id} of contact {erasure.contact_id}",
        )
        return workflow_id
