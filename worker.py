"""The Tailor worker: builds clients, constructs the activity classes, and polls until SIGTERM.

Run it as ``python worker.py`` or ``tailor worker``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack

from prometheus_client import start_http_server
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.ab_test import AbTestActivities
from activities.campaign_chunk import ChunkActivities
from activities.erasure import ErasureActivities
from activities.features import FeatureActivities
from activities.journey import JourneyActivities
from activities.outbound import OutboundActivities
from activities.planner import PlannerActivities
from rag.index import shared_index
from tailor.config import Settings
from tailor.db import Database, migrate
from tailor.delivery.dispatch import Dispatcher
from tailor.delivery.providers.router import ProviderRouter
from tailor.delivery.providers.setup import build_router
from tailor.delivery.rate_limit import rate_limiter
from tailor.delivery.smtp import SmtpDelivery
from tailor.journeys.emails import JourneyEmails
from tailor.journeys.milestones import Milestones
from tailor.journeys.timing import JourneyTiming
from tailor.journeys.triggers import TriggerAgent
from tailor.observability.metrics import REGISTRY
from tailor.observability.tracing import start_from_environment
from tailor.outbound.delivery import Deliveries, Poster
from tailor.personalise.context import CampaignContexts
from tailor.personalise.exemplars import ClusterExemplars
from tailor.personalise.generation import ClusterGenerator
from tailor.personalise.llm import LlmExecutor, build_tiers
from tailor.personalise.pii import PiiScanner
from tailor.privacy.erasure import Eraser
from tailor.profiles.cache import FeatureCache
from tailor.profiles.daily import DailyFeatures
from tailor.profiles.loader import ProfileLoader
from tailor.sending.compose import Composer
from tailor.sending.explain import plan_steps
from tailor.sending.guardrail import Guardrail
from tailor.sending.pipeline import SendPipeline
from tailor.temporal.client import connect, ensure_search_attributes
from tailor.temporal.journeys import JourneyControl
from tailor.temporal.outbound import OutboundRelay
from tailor.temporal.schedules import ensure_schedules
from tailor.tracking.urls import TrackingConfig
from workflows.ab_test import AbTestWorkflow
from workflows.campaign import CampaignWorkflow
from workflows.erasure import ErasureWorkflow
from workflows.features import DailyFeaturesWorkflow
from workflows.journey import JourneyWorkflow
from workflows.outbound import OutboundWebhookWorkflow

log = logging.getLogger("tailor.worker")


def build_dispatcher(db: Database, settings: Settings, router: ProviderRouter) -> Dispatcher:
    return Dispatcher(
        db,
        router,
        SmtpDelivery(settings),
        rate_limiter(settings.redis_url, settings.redis_key_prefix),
        smtp_connections=settings.smtp_connections,
        smtp_timeout_s=settings.smtp_timeout_s,
        default_rate_per_s=settings.send_rate_per_s,
        reconcile_after_s=settings.provider_reconcile_after_s,
    )


def build_deliveries(db: Database, settings: Settings) -> Deliveries:
    poster = Poster(
        server_secret=settings.outbound_secret,
        allow_private=settings.outbound_private_urls,
        timeout_s=settings.outbound_timeout_s,
    )
    return Deliveries(db, poster, disable_after=settings.outbound_disable_after)


def build_worker(
    client: Client,
    db: Database,
    settings: Settings,
    task_queue: str,
    router: ProviderRouter | None = None,
    deliveries: Deliveries | None = None,
) -> Worker:
    router = router or build_router(settings)
    contexts = CampaignContexts(db)
    pii = PiiScanner()
    generator = ClusterGenerator(
        db,
        LlmExecutor(build_tiers(settings), settings.llm_prices),
        daily_budget_usd=settings.llm_daily_budget_usd,
        alert_ratio=settings.llm_budget_alert_ratio,
        pii=pii,
    )
    feature_cache = FeatureCache.from_settings(settings)
    profiles = ProfileLoader(
        Database(settings.features_database_url) if settings.features_database_url else db,
        timeout_s=settings.profile_timeout_s,
        cache_size=settings.profile_cache_size,
        features=feature_cache,
    )
    index = (
        shared_index(
            url=settings.qdrant_url, path=settings.home / "qdrant", model=settings.embedding_model
        )
        if settings.rag_enabled
        else None
    )
    exemplars = ClusterExemplars(index)
    pipeline = SendPipeline(
        db,
        dispatcher=build_dispatcher(db, settings, router),
        generator=generator,
        profiles=profiles,
        exemplars=exemplars,
        composer=Composer(
            Guardrail(public_url=settings.public_url, secret=settings.unsubscribe_secret),
            TrackingConfig(settings.tracking_base_url, settings.tracking_secret),
        ),
        steps=plan_steps(settings),
    )
    timing = JourneyTiming(db)
    journey_emails = JourneyEmails(
        db, contexts=contexts, pipeline=pipeline, generator=generator, profiles=profiles,
        exemplars=exemplars, timing=timing,
    )  # fmt: skip

    async def journey_control() -> JourneyControl:
        return JourneyControl(client, settings)

    milestones = Milestones(db, TriggerAgent(db, journey_control))
    planner = PlannerActivities(db, settings, contexts)
    chunks = ChunkActivities(db, contexts, pipeline, release_batch=settings.chunk_size)
    journeys = JourneyActivities(db, journey_emails, timing)
    features = FeatureActivities(DailyFeatures(db, feature_cache), milestones)
    ab_tests = AbTestActivities(db, index, pii)
    outbound = OutboundActivities(deliveries or build_deliveries(db, settings))
    erasure = ErasureActivities(Eraser(db, features=feature_cache, profiles=profiles.cache))
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[
            CampaignWorkflow,
            JourneyWorkflow,
            DailyFeaturesWorkflow,
            AbTestWorkflow,
            OutboundWebhookWorkflow,
            ErasureWorkflow,
        ],
        activities=[
            planner.plan_campaign,
            planner.next_chunks,
            planner.finalize_campaign,
            planner.expire_reviews,
            chunks.send_chunk,
            chunks.release_reviewed,
            journeys.start_journey,
            journeys.plan_send_time,
            journeys.prepare_email,
            journeys.send_email,
            journeys.finish_journey,
            features.derive_page,
            features.emit_daily_events,
            ab_tests.evaluate,
            ab_tests.roll_out_winner,
            ab_tests.add_winner_to_corpus,
            ab_tests.finish,
            outbound.next_batch,
            outbound.deliver,
            outbound.dead_letter,
            erasure.erase_records,
            erasure.forget_cached,
            erasure.finish_erasure,
        ],
        max_concurrent_activities=max(settings.chunk_concurrency * 2, 8),
    )


async def _warm_retrieval(settings: Settings) -> None:
    """Load the embedding model and the exemplar corpus before taking work, so the first
    campaign's chunks do not wait for it (tens of seconds on a small machine)."""
    if not settings.rag_enabled:
        return
    index = shared_index(
        url=settings.qdrant_url, path=settings.home / "qdrant", model=settings.embedding_model
    )
    if index is not None:
        log.info("loading the embedding model and exemplar corpus")
        await asyncio.to_thread(lambda: (index.ensure_corpus(), index.embedder.encode(["warm"])))


def serve_metrics(settings: Settings) -> Runtime | None:
    """Serve this worker's metrics on ``TAILOR_WORKER_METRICS_PORT`` and return a Temporal
    runtime that serves the SDK's own on the next port. A port that is taken (say by another
    worker on this machine) is skipped with a warning, and the worker runs on without it; None:
    no SDK metrics."""
    port, host = settings.worker_metrics_port, settings.metrics_host
    if not port:
        return None
    try:
        start_http_server(port, host, registry=REGISTRY)
        log.info("worker metrics on http://%s:%d/metrics", host, port)
    except OSError as exc:
        log.warning("worker metrics not served on %s:%d (%s); set TAILOR_WORKER_METRICS_PORT",
                    host, port, exc)  # fmt: skip
    try:
        # Named the Prometheus way: seconds, with unit and _total suffixes.
        sdk = PrometheusConfig(
            bind_address=f"{host}:{port + 1}", durations_as_seconds=True, unit_suffix=True,
            counters_total_suffix=True,
        )  # fmt: skip
        return Runtime(telemetry=TelemetryConfig(metrics=sdk))
    except (OSError, RuntimeError, ValueError) as exc:  # the SDK says ValueError
        log.warning("Temporal SDK metrics not served on %s:%d (%s)", host, port + 1, exc)
        return None


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    async with AsyncExitStack() as stack:
        await migrate(settings.resolved_database_url)
        db = Database(settings.resolved_database_url)
        stack.push_async_callback(db.dispose)
        runtime = serve_metrics(settings)
        try:
            client = await connect(settings, runtime)
        except RuntimeError:
            raise SystemExit(
                f"tailor worker: cannot reach Temporal at {settings.temporal_address}; "
                "start it with `tailor server` or set TAILOR_TEMPORAL_ADDRESS"
            ) from None
        await ensure_search_attributes(client, settings.temporal_namespace)
        await ensure_schedules(client, settings)
        try:
            router = build_router(settings)
        except ValueError as exc:
            raise SystemExit(f"tailor worker: {exc}") from None
        stack.push_async_callback(router.close)
        health = asyncio.create_task(router.health_loop())
        stack.callback(health.cancel)
        await _warm_retrieval(settings)
        deliveries = build_deliveries(db, settings)
        stack.push_async_callback(deliveries.close)
        worker = build_worker(
            client, db, settings, settings.temporal_task_queue, router, deliveries
        )
        # Wakes the webhook workflows of endpoints with new outbox rows (tailor.temporal.outbound).
        relay = asyncio.create_task(OutboundRelay(client, db, settings).run(stop))
        stack.callback(relay.cancel)
        log.info("worker polling %s on %s", settings.temporal_task_queue, settings.temporal_address)
        async with worker:
            await stop.wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    tracing = start_from_environment("tailor-worker")

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    try:
        asyncio.run(_run())
    finally:
        if tracing is not None:
            tracing.close()  # exports the spans still batched


if __name__ == "__main__":
    main()
