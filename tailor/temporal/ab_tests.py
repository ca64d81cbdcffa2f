"""Starting and steering A/B test workflows, shared by the API and the CLI."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from tailor.config import Settings
from tailor.models import AbTest
from tailor.payloads import AbOutcome, AbProgress, AbTestInput
from workflows.ab_test import AbTestWorkflow
from workflows.search_attributes import KIND, TENANT


class AbTestControl:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def start(self, test: AbTest) -> None:
        await self._client.start_workflow(
            AbTestWorkflow.run,
            AbTestInput(
                test_id=test.id,
                tenant_id=test.tenant_id,
                variant_keys=[v["key"] for v in test.variants],
                cell_campaign_ids=[v["campaign_id"] for v in test.variants],
                window_s=test.window_s,
                tag_search_attributes=self._settings.temporal_search_attributes,
            ),
            id=test.workflow_id,
            task_queue=self._settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=(
                TypedSearchAttributes(
                    [
                        SearchAttributePair(TENANT, test.tenant_id),
                        SearchAttributePair(KIND, "ab_test"),
                    ]
                )
                if self._settings.temporal_search_attributes
                else None
            ),
            static_summary=f"A/B test {test.name!r} ({test.id}) for tenant {test.tenant_id}",
            static_details=(
                f"{len(test.variants)} variants on {test.test_fraction:.0%} of the audience, "
                f"metric {test.metric}, winner at P(best) ≥ {test.threshold}. Query `progress`; "
                "signals: decide_now, choose_winner(variant), cancel."
            ),
        )

    def handle(self, test: AbTest) -> WorkflowHandle[AbTestWorkflow, AbOutcome]:
        return self._client.get_workflow_handle_for(AbTestWorkflow.run, test.workflow_id)

    async def progress(self, test: AbTest) -> AbProgress:
        return await self.handle(test).query(AbTestWorkflow.progress)

    async def decide_now(self, test: AbTest) -> None:
        await self.handle(test).signal(AbTestWorkflow.decide_now)

    async def choose_winner(self, test: AbTest, variant: str) -> None:
        await self.handle(test).signal(AbTestWorkflow.choose_winner, variant)

    async def cancel(self, test: AbTest) -> None:
        await self.handle(test).signal(AbTestWorkflow.cancel)
