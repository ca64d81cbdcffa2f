"""The send pipeline on its own, with no Temporal: the same service the chunk and journey
activities call, against a real store (both backends) and a real SMTP capture server."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.errors import ErrorType, temporal_failures
from tailor.db import Database
from tailor.delivery.providers.setup import build_router
from tailor.devtools.smtp_sink import read_outbox
from tailor.errors import NotFound
from tailor.models import ConsentStatus, SendStatus
from tailor.personalise.context import CampaignContexts
from tailor.personalise.exemplars import ClusterExemplars
from tailor.personalise.generation import ClusterGenerator
from tailor.personalise.llm import LlmExecutor, build_tiers
from tailor.personalise.pii import PiiScanner
from tailor.profiles.loader import ProfileLoader
from tailor.sending.compose import Composer
from tailor.sending.errors import AwaitingReconciliation, ProfilesUnavailable, SendsDeferred
from tailor.sending.explain import plan_steps
from tailor.sending.guardrail import Guardrail
from tailor.sending.pipeline import SendPipeline
from tailor.store.consent import current_consent
from tailor.store.sends import sends_for
from tests.conftest import Sink, seeded_campaign, settings_for
from worker import build_dispatcher
from workflows import options


def _pipeline(db: Database, sink: Sink) -> SendPipeline:
    settings = settings_for(db, sink)
    return SendPipeline(
        db,
        dispatcher=build_dispatcher(db, settings, build_router(settings)),
        generator=ClusterGenerator(
            db,
            LlmExecutor(build_tiers(settings), settings.llm_prices),
            daily_budget_usd=1.0,
            alert_ratio=0.8,
            pii=PiiScanner(),
        ),  # fmt: skip
        profiles=ProfileLoader(db, timeout_s=5.0, cache_size=100),
        exemplars=ClusterExemplars(None),
        composer=Composer(Guardrail(public_url="https://t.example", secret="s" * 32)),
        steps=plan_steps(settings),
    )


async def test_the_pipeline_sends_each_consenting_contact_once_without_temporal(
    db: Database, sink: Sink
) -> None:
    campaign_id, consenting = await seeded_campaign(db, 40)
    ctx = await CampaignContexts(db).get(campaign_id)
    pipeline = _pipeline(db, sink)
    everyone = list(range(1, 41))
    async with db.read() as conn:
        consent = await current_consent(conn, contact_ids=everyone)
    # A consenting contact whose revocation the workflow forwards (signalled mid-campaign).
    revoked = min(c for c, status in consent.items() if status == ConsentStatus.GRANTED)
    beats: list[object] = []

    settled = await pipeline.deliver(ctx, everyone, [revoked], heartbeat=beats.append)

    assert settled == 0
    emails = read_outbox(sink.maildir, campaign_id)
    assert len(emails) == consenting - 1, "every consenting contact but the revoked one"
    async with db.read() as conn:
        rows = await sends_for(conn, campaign_id=campaign_id, contact_ids=everyone)
    sends = {s.contact_id: s for s in rows}
    assert sends[revoked].status == SendStatus.SUPPRESSED
    assert {e.headers["Message-ID"] for e in emails} == {
        s.message_id for s in sends.values() if s.status == SendStatus.SENT
    }
    assert beats, "delivery progress reaches the heartbeat"

    again = await pipeline.deliver(ctx, everyone, [])
    assert again == 40, "a second attempt finds every send settled"
    assert len(read_outbox(sink.maildir, campaign_id)) == consenting - 1, "and sends nothing"


@pytest.mark.parametrize(
    ("error", "error_type", "retryable"),
    [
        (NotFound("campaign", "c1"), ErrorType.CAMPAIGN_NOT_FOUND, False),
        (NotFound("template version", 7), ErrorType.TEMPLATE_NOT_FOUND, False),
        (NotFound("contact", 3), ErrorType.CONTACT_NOT_FOUND, False),
        (SendsDeferred(2), ErrorType.DELIVERY_DEFERRED, True),
        (ProfilesUnavailable(5), ErrorType.PROFILES_UNAVAILABLE, True),
        (AwaitingReconciliation(1, 30.0), ErrorType.AWAITING_RECONCILIATION, True),
    ],
)
def test_domain_failures_reach_temporal_with_the_types_the_workflows_list(
    error: Exception, error_type: str, retryable: bool
) -> None:
    with pytest.raises(ApplicationError) as raised, temporal_failures():
        raise error
    assert raised.value.type == error_type
    for policy in (options.STORE_RETRY, options.CHUNK_RETRY, options.JOURNEY_SEND_RETRY):
        listed = error_type in (policy.non_retryable_error_types or [])
        assert listed is not retryable, f"{error_type} in {policy}"
