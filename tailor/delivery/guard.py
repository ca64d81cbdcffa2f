"""Deliverability guard rails: a campaign whose complaint or bounce rate passes its tenant's
limit, once enough of it has gone out to judge, is paused before it harms the sending domain.

Mailbox providers throttle or block a sender whose complaints pass about 0.3% (Gmail's and
Yahoo's bulk sender rules), and a bounce rate over a few percent says the list is stale. The
defaults follow that (``Tenant.pause_complaint_rate`` 0.3%, ``pause_bounce_rate`` 5%, judged after
``pause_min_sent`` emails); each tenant can set its own.

A campaign is paused by the guard once: if someone resumes it (having looked), the guard leaves it
be, and the reason stays on the campaign for the report.
"""

from __future__ import annotations

from tailor.models import CampaignKind, CampaignStatus
from tailor.store.reports import CampaignHealth

GUARDED_KINDS = frozenset({CampaignKind.BATCH, CampaignKind.AB_CELL})


def breach(health: CampaignHealth) -> str | None:
    """Why this campaign must pause now, or None."""
    if health.kind not in GUARDED_KINDS or health.status != CampaignStatus.RUNNING:
        return None
    if health.paused_reason is not None or health.sent < health.min_sent:
        return None
    reached = max(health.sent - health.bounced, 1)
    complaint_rate = health.complained / reached
    if complaint_rate > health.complaint_limit:
        return (
            f"complaint rate {complaint_rate:.2%} passed the {health.complaint_limit:.2%} limit "
            f"after {health.sent:,} emails"
        )
    bounce_rate = health.bounced / health.sent
    if bounce_rate > health.bounce_limit:
        return (
            f"bounce rate {bounce_rate:.2%} passed the {health.bounce_limit:.2%} limit "
            f"after {health.sent:,} emails"
        )
    return None
