"""Tailor's Prometheus metrics: the seed's seventeen, named and typed the Prometheus way.

Counters end in ``_total`` and histograms in ``_seconds`` (or a unit-less score); every rate,
share and average is a query over them, never a stored figure (the mapping from the seed's
names is in the table below and in README "Watching it run"). Labels are bounded: a tenant, an
LLM tier, a provider, an agent, an outcome, a route template; never a contact, campaign or send
id, and never anything personal.

The seed's names, and what answers them (README "Watching it run" has the queries):

- email_send_rate: ``rate(tailor_emails_total{outcome="sent"}[5m])``
- personalization_latency_p95_ms: ``histogram_quantile(0.95, ...)`` over
  ``tailor_personalization_duration_seconds``
- llm_token_usage: ``tailor_llm_tokens_total{direction}``
- llm_cost_per_email_usd: ``tailor_llm_cost_usd_total`` over sent emails
- quality_score_avg, relevance_score_avg: ``_sum`` over ``_count`` of
  ``tailor_content_quality_score`` and ``tailor_content_relevance_score``
- open, click, unsubscribe and bounce rate: ``tailor_email_events_total{event}`` over sent
  (read from the report rollups by the API's ``/metrics``)
- agent_success_rate, agent_retry_count: ``tailor_agent_runs_total{outcome}``,
  ``tailor_agent_retries_total``
- guardrail_rejection_rate: ``tailor_guardrail_verdicts_total{verdict}``
- pii_detection_count: ``tailor_pii_detections_total{entity}``
- consent_rejection_rate: ``tailor_consent_checks_total{outcome}``
- api_error_rate: ``tailor_api_requests_total{status="5xx"}`` over all
- database_query_latency_ms: ``tailor_db_query_duration_seconds``

Beyond the seventeen: the trigger path's ``tailor_journey_event_to_send_seconds``, the LLM
requests, spend and budget, and the providers' requests and breakers.

Each process (the API, each worker) has its own registry and serves it (``api/routes/metrics.py``,
``worker.py``); Prometheus adds the ``instance`` label. The objects here are plain in-memory
counters with no I/O, so any layer may count.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# Latency buckets: milliseconds (a query, a route) to a minute (an LLM call under load).
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
_SCORE = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

EMAILS = Counter(
    "tailor_emails",
    "Emails settled, by outcome: sent (the provider took it), failed, suppressed (no consent, "
    "a limit) or held_out (a control group's).",
    ["tenant", "provider", "tier", "outcome"],
    registry=REGISTRY,
)
PERSONALIZATION = Histogram(
    "tailor_personalization_duration_seconds",
    "Writing one cluster's content: the LLM calls, evaluation and redaction (tier: the one "
    "that wrote it, or rules).",
    ["tier"],
    buckets=_SLOW,
    registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "tailor_llm_tokens",
    "LLM tokens used, by direction (input, output).",
    ["tenant", "tier", "direction"],
    registry=REGISTRY,
)
LLM_COST = Counter(
    "tailor_llm_cost_usd",
    "LLM spend in US dollars at the configured prices.",
    ["tenant", "tier"],
    registry=REGISTRY,
)
LLM_REQUESTS = Histogram(
    "tailor_llm_request_duration_seconds",
    "One LLM request, by tier and outcome (ok, failed).",
    ["tier", "outcome"],
    buckets=_SLOW,
    registry=REGISTRY,
)
QUALITY = Histogram(
    "tailor_content_quality_score",
    "The evaluator's quality score (0-1) of each piece of LLM content.",
    ["tier"],
    buckets=_SCORE,
    registry=REGISTRY,
)
RELEVANCE = Histogram(
    "tailor_content_relevance_score",
    "The evaluator's relevance score (0-1) of each piece of LLM content.",
    ["tier"],
    buckets=_SCORE,
    registry=REGISTRY,
)
AGENT_RUNS = Counter(
    "tailor_agent_runs",
    "Runs of an agent (writer: an LLM tier writing a cluster's email), by outcome (success, "
    "failure, skipped: its circuit was open).",
    ["agent", "tier", "outcome"],
    registry=REGISTRY,
)
AGENT_RETRIES = Counter(
    "tailor_agent_retries",
    "An agent's second tries: the writer again with another prompt after the evaluator refused.",
    ["agent", "tier"],
    registry=REGISTRY,
)
GUARDRAIL = Counter(
    "tailor_guardrail_verdicts",
    "The evaluator's and brand guardrail's verdicts on LLM content: passed, review (held for a "
    "person) or rejected.",
    ["tenant", "verdict"],
    registry=REGISTRY,
)
PII = Counter(
    "tailor_pii_detections",
    "Personal data found (and redacted) in LLM output, by entity type.",
    ["entity"],
    registry=REGISTRY,
)
CONSENT = Counter(
    "tailor_consent_checks",
    "Consent checked right before a send: granted, or rejected (no consent, revoked, suppressed).",
    ["tenant", "outcome"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "tailor_api_requests",
    "API requests by route template, method and status class (2xx, 4xx, 5xx).",
    ["route", "method", "status"],
    registry=REGISTRY,
)
API_LATENCY = Histogram(
    "tailor_api_request_duration_seconds",
    "API request latency by route template and method.",
    ["route", "method"],
    buckets=_FAST,
    registry=REGISTRY,
)
DB_QUERIES = Histogram(
    "tailor_db_query_duration_seconds",
    "Database statement latency, by kind (select, insert, update, delete, other).",
    ["operation"],
    buckets=_FAST,
    registry=REGISTRY,
)
PROVIDER_REQUESTS = Counter(
    "tailor_provider_requests",
    "Requests to an email provider (a batch or an SMTP session), by outcome (ok, failed: 5xx, "
    "429, unreachable, timed out).",
    ["provider", "outcome"],
    registry=REGISTRY,
)
EVENT_TO_SEND = Histogram(
    "tailor_journey_event_to_send_seconds",
    "From the event that started a journey reaching Tailor to its email accepted by the "
    "provider, for the emails a journey sends on the trigger (no wait step before them).",
    ["tenant"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=REGISTRY,
)
PROVIDER_CIRCUIT = Gauge(
    "tailor_provider_circuit_open",
    "1 while this worker's breaker for a provider is open (its traffic fails over), else 0.",
    ["provider"],
    registry=REGISTRY,
)


# The Temporal SDK's own metrics that the dashboards and alerts read (a worker serves them on
# the port after its own; tests/test_metrics.py checks the SDK really exports these names).
SDK_METRICS = (
    "temporal_activity_schedule_to_start_latency_seconds_bucket",
    "temporal_workflow_task_schedule_to_start_latency_seconds_bucket",
    "temporal_worker_task_slots_used",
    "temporal_worker_task_slots_available",
    "temporal_num_pollers",
)
WRITER = "writer"  # the agent that writes a cluster's email (an LLM tier)
NONE = "none"  # a label with nothing to say (a suppressed email has no provider or tier)


def status_class(status: int) -> str:
    return f"{status // 100}xx"
