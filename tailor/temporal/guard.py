"""Pausing the campaigns the deliverability guard rails say must stop (``tailor.delivery.guard``):
after each batch of provider reports with a bounce or complaint in it, the campaigns of those
emails are judged, and each one in breach gets the same pause signal a marketer's button sends,
its status and reason recorded, and an audit entry."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection

from tailor.accounts.audit import Outcome, record
from tailor.db import Database
from tailor.delivery.guard import breach
from tailor.models import AuditEntry, Campaign, utcnow
from tailor.store.campaigns import record_auto_pause
from tailor.store.reports import campaign_health
from tailor.temporal.campaigns import CampaignControl

log = logging.getLogger(__name__)
ACTOR = "deliverability-guard"


async def pause_breaching(
    db: Database, control: Callable[[], Awaitable[CampaignControl]], send_ids: Collection[int]
) -> list[str]:
    """Pause every campaign of these sends that is over its limits; returns their ids.
    ``control`` is called only when one is: a batch without breach never needs Temporal."""
    async with db.read() as conn:
        healths = await campaign_health(conn, send_ids=send_ids)
    paused: list[str] = []
    for health in healths:
        reason = breach(health)
        if reason is None:
            continue
        async with db.read_session() as session:
            campaign = await session.get(Campaign, health.campaign_id)
        if campaign is None:
            continue
        try:
            await (await control()).pause(campaign)
        except Exception as error:  # Temporal unreachable, or the workflow gone
            # The reports are stored either way; the next bounce or complaint judges it again.
            log.warning("campaign %s not paused (%s): %s", campaign.id, reason, error)
            continue
        async with db.write() as conn:
            changed = await record_auto_pause(conn, campaign_id=campaign.id, reason=reason)
        if changed:
            await record(db, _audit(campaign, reason))
            log.warning("campaign %s paused: %s", campaign.id, reason)
            paused.append(campaign.id)
    return paused


def _audit(campaign: Campaign, reason: str) -> AuditEntry:
    return AuditEntry(
        tenant_id=campaign.tenant_id, actor=ACTOR, actor_kind="system", role="system",
        method="POST", route="/v1/campaigns/{campaign_id}/pause",
        targets={"campaign_id": campaign.id}, status_code=200, outcome=Outcome.OK.value,
        request_id=f"guard-{campaign.id}-{int(utcnow().timestamp())}", detail={"reason": reason},
    )  # fmt: skip
