"""Starting, steering and reading campaigns in Temporal, shared by the API and the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError

from tailor.config import Settings
from tailor.models import Campaign
from tailor.payloads import CampaignInput, CampaignOutcome, CampaignProgress, CampaignRun
from workflows.campaign import CampaignWorkflow
from workflows.search_attributes import campaign_search_attributes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignalReport:
    signalled: list[str]
    failed: list[str]


class CampaignControl:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def start(self, campaign: Campaign) -> None:
        await self._client.start_workflow(
            CampaignWorkflow.run,
            CampaignRun(
                CampaignInput(
                    campaign.id,
                    campaign.tenant_id,
                    campaign.start_at.isoformat() if campaign.start_at else None,
                )
            ),
            id=campaign.workflow_id,
            task_queue=self._settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=(
                campaign_search_attributes(campaign.tenant_id, campaign.id)
                if self._settings.temporal_search_attributes
                else None
            ),
            static_summary=f"Campaign {campaign.name!r} ({campaign.id}) for tenant "
            f"{campaign.tenant_id}",
            static_details=(
                f"Batch campaign {campaign.id}: template version {campaign.template_version_id}, "
                f"segment {campaign.segment or 'all contacts'}. Query `progress` for totals; "
                "signals: pause, resume, cancel, revoke_consent(contact_id)."
            ),
        )

    def handle(self, campaign: Campaign) -> WorkflowHandle[CampaignWorkflow, CampaignOutcome]:
        return self._client.get_workflow_handle_for(CampaignWorkflow.run, campaign.workflow_id)

    async def progress(self, campaign: Campaign) -> CampaignProgress | None:
        try:
            return await self.handle(campaign).query(CampaignWorkflow.progress)
        except RPCError as exc:
            log.warning("progress query for %s failed: %s", campaign.id, exc.message)
            return None

    async def pause(self, campaign: Campaign) -> None:
        await self.handle(campaign).signal(CampaignWorkflow.pause)

    async def resume(self, campaign: Campaign) -> None:
        await self.handle(campaign).signal(CampaignWorkflow.resume)

    async def cancel(self, campaign: Campaign) -> None:
        await self.handle(campaign).signal(CampaignWorkflow.cancel)

    async def review_decided(self, campaign_id: str, review_id: int) -> bool:
        """Wake the campaign waiting on this review; False if it could not be reached (it
        re-checks the store hourly, so the decision still takes effect)."""
        handle = self._client.get_workflow_handle_for(
            CampaignWorkflow.run, f"campaign-{campaign_id}"
        )
        try:
            await handle.signal(CampaignWorkflow.review_decided, review_id)
        except RPCError as exc:
            log.info("review signal to %s not delivered: %s", campaign_id, exc.message)
            return False
        return True

    async def revoke_consent(self, campaign_ids: list[str], contact_id: int) -> SignalReport:
        """Tell every running campaign; the ledger row is already committed, so a campaign
        that cannot be reached still checks it before each send."""
        signalled: list[str] = []
        failed: list[str] = []
        for campaign_id in campaign_ids:
            handle = self._client.get_workflow_handle_for(
                CampaignWorkflow.run, f"campaign-{campaign_id}"
            )
            try:
                await handle.signal(CampaignWorkflow.revoke_consent, contact_id)
                signalled.append(campaign_id)
            except RPCError as exc:
                log.info("revoke signal to %s not delivered: %s", campaign_id, exc.message)
                failed.append(campaign_id)
        return SignalReport(signalled, failed)
