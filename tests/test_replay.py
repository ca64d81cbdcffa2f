"""Committed workflow histories still replay: a workflow change that breaks running campaigns
fails here (regenerate with ``python scripts/record_histories.py`` only for patched changes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from workflows.ab_test import AbTestWorkflow
from workflows.campaign import CampaignWorkflow
from workflows.erasure import ErasureWorkflow
from workflows.features import DailyFeaturesWorkflow
from workflows.journey import JourneyWorkflow
from workflows.outbound import OutboundWebhookWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_every_workflow_has_committed_histories() -> None:
    names = {path.stem for path in HISTORIES}
    expected = {
        "campaign_completed",
        "campaign_paused_revoked_resumed",
        "campaign_cancelled",
        "campaign_cancelled_through_temporal",
        "campaign_continued_as_new",
        "campaign_reviewed",  # after the review-queue patch
        "campaign_send_time_rounds",  # after the send-time-rounds patch
        "campaign_scheduled_start",  # after the scheduled-start patch
        "ab_test_default",
        "ab_test_chosen_by_hand",
        "journey_welcome_completed",
        "journey_cart_exited_on_purchase",
        "journey_consent_stopped",
        "journey_milestone_throttled",
        "features_daily",
        "outbound_dead_lettered_then_delivered",
        "erasure_done",
    }
    assert expected <= names


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays(path: Path) -> None:
    workflows = [
        CampaignWorkflow,
        JourneyWorkflow,
        DailyFeaturesWorkflow,
        AbTestWorkflow,
        OutboundWebhookWorkflow,
        ErasureWorkflow,
    ]
    await Replayer(workflows=workflows).replay_workflow(_history(path))


async def test_a_changed_workflow_is_caught() -> None:
    """Swap the order of the first two activities in a history: replay must refuse it."""
    raw = json.loads((Path(__file__).parent / "histories" / "campaign_completed.json").read_text())
    scheduled = [
        e["activityTaskScheduledEventAttributes"]["activityType"]
        for e in raw["events"]
        if "activityTaskScheduledEventAttributes" in e
    ]
    scheduled[0]["name"], scheduled[1]["name"] = scheduled[1]["name"], scheduled[0]["name"]
    broken = WorkflowHistory.from_json("broken", json.dumps(raw))
    with pytest.raises(NondeterminismError):
        await Replayer(workflows=[CampaignWorkflow]).replay_workflow(broken)
