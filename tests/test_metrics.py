"""Prometheus metrics: an LLM campaign moves the seed's seventeen by what it did; the API serves
them (platform keys only) with every tenant's email events from the rollups; a worker serves
its own and the Temporal SDK's on ports of their own; no label or value carries personal data."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tailor.db import Database
from tailor.devtools.llm_stub import StubLlm
from tailor.models import Role
from tailor.observability.metrics import REGISTRY, SDK_METRICS
from tests.conftest import (
    Sink,
    key_headers,
    llm_settings,
    run_campaign,
    seeded_campaign,
    settings_for,
    task_queue,
)
from tests.test_access import _platform_key
from worker import build_worker, serve_metrics

# The seed's seventeen, as exported (tailor/observability/metrics.py maps them).
SEVENTEEN = {
    "email_send_rate": "tailor_emails",
    "personalization_latency_p95_ms": "tailor_personalization_duration_seconds",
    "llm_token_usage": "tailor_llm_tokens",
    "llm_cost_per_email_usd": "tailor_llm_cost_usd",
    "quality_score_avg": "tailor_content_quality_score",
    "relevance_score_avg": "tailor_content_relevance_score",
    "open_rate_percent": "tailor_email_events",
    "click_rate_percent": "tailor_email_events",
    "unsubscribe_rate_percent": "tailor_email_events",
    "bounce_rate_percent": "tailor_email_events",
    "agent_success_rate": "tailor_agent_runs",
    "agent_retry_count": "tailor_agent_retries",
    "guardrail_rejection_rate": "tailor_guardrail_verdicts",
    "pii_detection_count": "tailor_pii_detections",
    "consent_rejection_rate": "tailor_consent_checks",
    "api_error_rate": "tailor_api_requests",
    "database_query_latency_ms": "tailor_db_query_duration_seconds",
}


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _sum(name: str, **labels: str) -> float:
    """A sample's total over the label values not given."""
    total = 0.0
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture
async def campaign_run(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink, stub: StubLlm
) -> AsyncIterator[dict[str, Any]]:
    """An LLM campaign to 60 people, with the metrics before and after."""
    before = {
        "sent": _value("tailor_emails_total", tenant="demo", provider="smtp", tier="openai",
                       outcome="sent"),
        "suppressed": _sum("tailor_emails_total", tenant="demo", outcome="suppressed"),
        "rejected": _value("tailor_consent_checks_total", tenant="demo", outcome="rejected"),
        "granted": _value("tailor_consent_checks_total", tenant="demo", outcome="granted"),
        "tokens_in": _value("tailor_llm_tokens_total", tenant="demo", tier="openai",
                            direction="input"),
        "cost": _value("tailor_llm_cost_usd_total", tenant="demo", tier="openai"),
        "quality": _value("tailor_content_quality_score_count", tier="openai"),
        "runs": _value("tailor_agent_runs_total", agent="writer", tier="openai",
                       outcome="success"),
        "passed": _value("tailor_guardrail_verdicts_total", tenant="demo", verdict="passed"),
        "written": _sum("tailor_personalization_duration_seconds_count"),
        "queries": _sum("tailor_db_query_duration_seconds_count"),
    }  # fmt: skip
    campaign_id, consenting = await seeded_campaign(sqlite_db, 60)
    queue = task_queue()
    settings = settings_for(sqlite_db, sink, **llm_settings(stub))
    async with build_worker(time_skipping_env.client, sqlite_db, settings, queue):
        outcome = await run_campaign(time_skipping_env.client, campaign_id, queue)
    yield {"before": before, "outcome": outcome, "consenting": consenting, "stub": stub,
           "campaign_id": campaign_id}  # fmt: skip


async def test_a_campaign_moves_the_metrics_by_what_it_did(campaign_run: dict[str, Any]) -> None:
    before, outcome = campaign_run["before"], campaign_run["outcome"]
    stub: StubLlm = campaign_run["stub"]
    calls = len([r for r in stub.requests if r.provider == "openai"])
    assert outcome.sent == campaign_run["consenting"] and calls >= 1

    sent = _value("tailor_emails_total", tenant="demo", provider="smtp", tier="openai",
                  outcome="sent")  # fmt: skip
    assert sent - before["sent"] == outcome.sent
    suppressed = _sum("tailor_emails_total", tenant="demo", outcome="suppressed")
    assert suppressed - before["suppressed"] == outcome.suppressed
    rejected = _value("tailor_consent_checks_total", tenant="demo", outcome="rejected")
    granted = _value("tailor_consent_checks_total", tenant="demo", outcome="granted")
    assert rejected - before["rejected"] == outcome.suppressed
    assert granted - before["granted"] == outcome.sent

    # The stub answers 420 tokens in and 180 out, priced as gpt-4o-mini.
    tokens = _value("tailor_llm_tokens_total", tenant="demo", tier="openai", direction="input")
    assert tokens - before["tokens_in"] == 420 * calls
    cost = _value("tailor_llm_cost_usd_total", tenant="demo", tier="openai") - before["cost"]
    assert cost == pytest.approx(calls * (420 * 0.15 + 180 * 0.60) / 1e6)
    runs = _value("tailor_agent_runs_total", agent="writer", tier="openai", outcome="success")
    assert runs - before["runs"] == calls

    # Every piece of content was scored and judged; the scores are shares.
    scored = _value("tailor_content_quality_score_count", tier="openai") - before["quality"]
    assert scored == calls
    average = _value("tailor_content_quality_score_sum", tier="openai") / _value(
        "tailor_content_quality_score_count", tier="openai"
    )
    assert 0.0 < average <= 1.0
    passed = _value("tailor_guardrail_verdicts_total", tenant="demo", verdict="passed")
    assert passed - before["passed"] == calls
    written = _sum("tailor_personalization_duration_seconds_count") - before["written"]
    assert written == calls
    assert _sum("tailor_db_query_duration_seconds_count") > before["queries"] + outcome.sent / 100


async def test_the_api_serves_the_seventeen_to_platform_keys_only(
    campaign_run: dict[str, Any], sqlite_db: Database
) -> None:
    app = create_app(settings_for_api(sqlite_db))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as http:
            admin = await key_headers(sqlite_db, "demo", Role.ADMIN)
            campaign = await http.get(f"/v1/campaigns/{campaign_run['campaign_id']}", headers=admin)
            assert campaign.status_code == 200
            assert (await http.get("/v1/contacts/999999", headers=admin)).status_code == 404
            assert (await http.get("/metrics")).status_code == 401
            assert (await http.get("/metrics", headers=admin)).status_code == 403
            answer = await http.get("/metrics", headers=await _platform_key(sqlite_db))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    missing = {seed: name for seed, name in SEVENTEEN.items() if name not in families}
    assert not missing, f"not exported: {missing}"

    # Email events come from the rollups, whichever process recorded them.
    events = {
        s.labels["event"]: s.value
        for s in families["tailor_email_events"].samples
        if s.labels["tenant"] == "demo" and s.name == "tailor_email_events_total"
    }
    assert events["sent"] == campaign_run["outcome"].sent
    assert {"opened", "clicked", "unsubscribed", "bounced", "complained"} <= set(events)
    # LLM spend today against the budget, from the usage ledger (what the cost alerts read).
    spent = {s.labels["tenant"]: s.value for s in families["tailor_llm_spend_today_usd"].samples}
    budget = {s.labels["tenant"]: s.value for s in families["tailor_llm_daily_budget_usd"].samples}
    async with sqlite_db.read() as conn:
        ledger = (await conn.exec_driver_sql("SELECT sum(cost_usd) FROM llm_usage")).scalar_one()
    assert spent["demo"] == pytest.approx(ledger) and spent["demo"] > 0
    assert budget["demo"] == settings_for_api(sqlite_db).llm_daily_budget_usd
    # Routes by template, never by path: the contact id is not a label.
    routes = {s.labels["route"] for s in families["tailor_api_requests"].samples}
    assert "/v1/contacts/{contact_id}" in routes and "/v1/contacts/999999" not in routes
    statuses = {
        (s.labels["route"], s.labels["status"])
        for s in families["tailor_api_requests"].samples
        if s.name == "tailor_api_requests_total"
    }
    assert ("/v1/contacts/{contact_id}", "4xx") in statuses
    assert ("/v1/campaigns/{campaign_id}", "2xx") in statuses

    # Nothing personal anywhere: no address, name or campaign id in any label.
    async with sqlite_db.read() as conn:
        people = (await conn.exec_driver_sql("SELECT email, first_name FROM contact")).all()
    personal = {str(v) for row in people for v in row if v}
    labels = {
        str(value)
        for family in families.values()
        for sample in family.samples
        for value in sample.labels.values()
    }
    assert not labels & personal
    assert campaign_run["campaign_id"] not in answer.text


def settings_for_api(db: Database) -> Any:
    from tailor.config import Settings

    return Settings(database_url=db.url, rag_enabled=False, redis_url=None,
                    temporal_address="127.0.0.1:9")  # fmt: skip


def _free_pair() -> int:
    """A port whose next port is free too."""
    for _ in range(50):
        with socket.socket() as one:
            one.bind(("127.0.0.1", 0))
            port = int(one.getsockname()[1])
            with socket.socket() as two:
                try:
                    two.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two free ports in a row")


async def test_a_worker_serves_its_metrics_and_the_sdks_on_ports_of_its_own(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    port = _free_pair()
    settings = settings_for(sqlite_db, sink, worker_metrics_port=port)
    runtime = serve_metrics(settings)
    assert runtime is not None
    # A campaign through a worker whose client runs on that runtime, as `tailor worker` does.
    client = await Client.connect(
        time_skipping_env.client.service_client.config.target_host, runtime=runtime
    )
    campaign_id, _ = await seeded_campaign(sqlite_db, 5)
    queue = task_queue()
    async with build_worker(client, sqlite_db, settings, queue):
        await run_campaign(client, campaign_id, queue)
    async with httpx.AsyncClient() as http:
        ours = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert ours.status_code == 200 and "tailor_emails_total" in ours.text
        sdk = await http.get(f"http://127.0.0.1:{port + 1}/metrics")
    assert sdk.status_code == 200
    # The SDK's names the dashboards and alert rules read (tests/test_monitoring_as_code.py).
    served = {line.split("{")[0].split(" ")[0] for line in sdk.text.splitlines()}
    assert set(SDK_METRICS) <= served, set(SDK_METRICS) - served
    # Both ports are taken now: a second worker here runs on without them.
    assert serve_metrics(settings) is None
    assert serve_metrics(settings_for(sqlite_db, sink, worker_metrics_port=0)) is None


async def test_a_taken_sdk_port_leaves_the_workers_own_metrics_served(
    sqlite_db: Database, sink: Sink
) -> None:
    port = _free_pair()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))
        taken.listen()
        runtime = serve_metrics(settings_for(sqlite_db, sink, worker_metrics_port=port))
    assert runtime is None
    async with httpx.AsyncClient() as http:
        ours = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert ours.status_code == 200 and "tailor_db_query_duration_seconds" in ours.text
