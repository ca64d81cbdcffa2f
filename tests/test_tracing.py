"""Traces: a campaign and a journey, each started through the API, make one trace from the
request to the provider, through Temporal, with Tailor's steps, the LLM call and the database
statements in it; no span carries a contact's address or name. Off, nothing is traced."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import select
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.main import create_app
from tailor.cli.bench_observability import SpanCollector
from tailor.db import Database, migrate
from tailor.delivery.providers.setup import build_router
from tailor.demo.seed import seed_demo
from tailor.devtools.esp_stub import STUB_SENDGRID_KEY, running_esp_stub
from tailor.devtools.llm_stub import StubLlm
from tailor.journeys.definitions import journey_workflow_id
from tailor.models import Contact
from tailor.observability import tracing
from tailor.store.journeys import install_builtins
from tests.conftest import Sink, key_headers, llm_settings, settings_for, task_queue
from worker import build_worker
from workflows.journey import JourneyWorkflow


@dataclass
class Traced:
    exporter: InMemorySpanExporter
    http: httpx.AsyncClient
    client: Client
    env: WorkflowEnvironment
    db: Database
    queue: str
    personal: list[str]  # every contact's address and names
    template_version_id: int

    def trace_of(self, name: str) -> list[ReadableSpan]:
        """The spans of the one trace that has a span called ``name``."""
        spans = self.exporter.get_finished_spans()
        roots = {s.context.trace_id for s in spans if s.name == name}
        assert len(roots) == 1, f"{len(roots)} traces with a {name!r} span"
        return [s for s in spans if s.context.trace_id in roots]


@asynccontextmanager
async def traced_stack(
    env: WorkflowEnvironment, tmp_path: Path, sink: Sink, stub: StubLlm, **overrides: object
) -> AsyncIterator[Traced]:
    """Tracing on with an in-memory exporter, then (so they are instrumented) the database,
    a Temporal client with the tracing interceptor, the API and a worker."""
    exporter = InMemorySpanExporter()
    on = tracing.start("tailor-test", exporter, batch=False)
    async with AsyncExitStack() as cleanup:
        cleanup.callback(on.close)
        url = f"sqlite+aiosqlite:///{tmp_path / 'traced.db'}"
        await migrate(url)
        db = Database(url)
        cleanup.push_async_callback(db.dispose)
        seeded = await seed_demo(db, contacts=12)
        async with db.session() as session:
            await install_builtins(session=session, tenant_id="demo")
        config = env.client.config()
        config["interceptors"] = on.interceptors()
        client = Client(**config)
        queue = task_queue()
        settings = settings_for(
            db, sink, temporal_task_queue=queue, **llm_settings(stub), **overrides
        )
        app = create_app(settings, temporal_client=client)
        router = build_router(settings)
        cleanup.push_async_callback(router.close)  # an ESP's open connections with it
        async with (
            build_worker(client, db, settings, queue, router),
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t",
                headers=await key_headers(db, "demo", "admin"),
            ) as http,
        ):  # fmt: skip
            async with db.read() as conn:
                rows = await conn.execute(
                    select(Contact.email, Contact.first_name, Contact.last_name)  # type: ignore[call-overload]
                )
                personal = [v for row in rows.all() for v in row if v]
            yield Traced(exporter, http, client, env, db, queue, personal,
                         seeded.template_version_id)  # fmt: skip


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


def _check_tree(spans: list[ReadableSpan]) -> dict[int, ReadableSpan]:
    """One root, and every other span's parent is in the trace (nothing dangles)."""
    by_id = {s.context.span_id: s for s in spans}
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1, [s.name for s in roots]
    dangling = [s.name for s in spans if s.parent is not None and s.parent.span_id not in by_id]
    assert not dangling, dangling
    return by_id


def _parents(spans: list[ReadableSpan], by_id: dict[int, ReadableSpan]) -> set[tuple[str, str]]:
    """(span name, its parent's name) for every span with a parent."""
    return {(s.name, by_id[s.parent.span_id].name) for s in spans if s.parent is not None}


def _one_workflow_span_a_run(spans: list[ReadableSpan]) -> None:
    """In the workflow, a span for the run and none for each activity it schedules (the
    activity's own span says when it ran) or for a run that succeeded."""
    names = [s.name for s in spans]
    assert sum(n.startswith("RunWorkflow:") for n in names) == 1, names
    assert not [n for n in names if n.startswith(("StartActivity:", "CompleteWorkflow:"))]


def _no_personal_data(spans: list[ReadableSpan], personal: list[str]) -> None:
    """Every attribute of every span and span event, names and values, is free of them."""
    assert len(personal) > 12  # addresses, first and last names
    for span in spans:
        texts = [span.name]
        for attributes in [span.attributes, *(e.attributes for e in span.events)]:
            for key, value in (attributes or {}).items():
                texts += [key, *(map(str, value) if isinstance(value, tuple) else [str(value)])]
        found = [p for p in personal for t in texts if p.lower() in t.lower()]
        assert not found, f"{span.name}: {found}"


async def test_a_campaign_is_one_trace_from_the_request_to_the_provider(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path, sink: Sink, stub: StubLlm
) -> None:
    async with traced_stack(time_skipping_env, tmp_path, sink, stub) as stack:
        answer = await stack.http.post(
            "/v1/campaigns",
            json={"name": "Traced", "template_version_id": stack.template_version_id},
        )
        assert answer.status_code == 202, answer.text
        outcome = await stack.client.get_workflow_handle(answer.json()["workflow_id"]).result()
        assert outcome["sent"] >= 1
        spans = stack.trace_of("POST /v1/campaigns")

    by_id = _check_tree(spans)
    root = next(s for s in spans if s.parent is None)
    assert (root.name, root.kind) == ("POST /v1/campaigns", SpanKind.SERVER)
    assert root.attributes is not None and root.attributes.get("http.route") == "/v1/campaigns"
    # The run is a child of the client's start, and each activity's run a child of the run.
    assert _parents(spans, by_id) >= {
        ("StartWorkflow:CampaignWorkflow", "POST /v1/campaigns"),
        ("RunWorkflow:CampaignWorkflow", "StartWorkflow:CampaignWorkflow"),
        ("RunActivity:plan_campaign", "RunWorkflow:CampaignWorkflow"),
        ("plan", "RunActivity:plan_campaign"),
        ("RunActivity:send_chunk", "RunWorkflow:CampaignWorkflow"),
        ("personalise", "RunActivity:send_chunk"),
        ("generate", "personalise"),
        ("chat gpt-4o-mini", "generate"),
        ("evaluate", "personalise"),
        ("guard", "RunActivity:send_chunk"),
        ("deliver", "RunActivity:send_chunk"),
    }
    # Each LLM request is a GenAI client span inside "generate", with its token counts.
    llm = [s for s in spans if s.name == "chat gpt-4o-mini"]
    assert llm and all("generate" in _ancestors(s, by_id) for s in llm)
    assert {(s.attributes or {}).get("gen_ai.usage.input_tokens") for s in llm} == {420}
    assert len(llm) == len(stub.requests)
    # The SQLAlchemy instrumentation's statements: the request's own, and the chunk's.
    statements = [s for s in spans if (s.attributes or {}).get("db.system") == "sqlite"]
    assert any("RunActivity:send_chunk" in _ancestors(s, by_id) for s in statements)
    assert any(_ancestors(s, by_id) == ["POST /v1/campaigns"] for s in statements)

    _one_workflow_span_a_run(spans)
    deliver = next(s for s in spans if s.name == "deliver")
    assert deliver.attributes is not None
    assert deliver.attributes["tailor.provider"] == "smtp"
    accepted = [
        (s.attributes or {}).get("tailor.accepted", 0) for s in spans if s.name == "deliver"
    ]
    assert sum(int(str(n)) for n in accepted) == outcome["sent"]
    evaluate = next(s for s in spans if s.name == "evaluate")
    assert (evaluate.attributes or {}).get("tailor.verdict") in {"passed", "review", "rejected"}
    _no_personal_data(spans, stack.personal)


async def test_a_journey_is_one_trace_from_the_event_to_the_email(
    isolated_time_skipping_env: WorkflowEnvironment, tmp_path: Path, sink: Sink, stub: StubLlm
) -> None:
    """Sent through SendGrid (the loopback stub): the ESP request is the httpx
    instrumentation's span, inside "deliver"."""
    env = isolated_time_skipping_env
    with running_esp_stub() as esp:
        async with traced_stack(
            env, tmp_path, sink, stub, providers=["sendgrid"],
            sendgrid_api_key=STUB_SENDGRID_KEY, sendgrid_base_url=esp.url,
        ) as stack:  # fmt: skip
            spans = await _one_journey(stack, env)
    by_id = _check_tree(spans)
    start = next(s for s in spans if s.name == "SignalWithStartWorkflow:JourneyWorkflow")
    assert _ancestors(start, by_id)[-1] == "POST /v1/track"
    assert _parents(spans, by_id) >= {
        ("RunWorkflow:JourneyWorkflow", "SignalWithStartWorkflow:JourneyWorkflow"),
        ("HandleSignal:event", "SignalWithStartWorkflow:JourneyWorkflow"),
        ("RunActivity:prepare_email", "RunWorkflow:JourneyWorkflow"),
        ("RunActivity:send_email", "RunWorkflow:JourneyWorkflow"),
        ("guard", "RunActivity:send_email"),
        ("claim", "RunActivity:send_email"),
        ("deliver", "RunActivity:send_email"),
    }
    _one_workflow_span_a_run(spans)
    esp_calls = [s for s in spans if s.name == "POST" and "deliver" in _ancestors(s, by_id)]
    assert len(esp_calls) == 1 and esp_calls[0].kind == SpanKind.CLIENT
    deliver = next(s for s in spans if s.name == "deliver")
    assert (deliver.attributes or {}).get("tailor.provider") == "sendgrid"
    assert (deliver.attributes or {}).get("tailor.accepted") == 1
    _no_personal_data(spans, stack.personal)


async def _one_journey(stack: Traced, env: WorkflowEnvironment) -> list[ReadableSpan]:
    """A person abandons a cart through the Segment API; their reminder goes an hour later."""
    async with stack.db.read() as conn:
        person = (
            await conn.exec_driver_sql(
                "SELECT c.id, c.email FROM contact c JOIN consent_record r "
                "ON r.contact_id = c.id WHERE r.status = 'granted' ORDER BY c.id"
            )
        ).first()
    assert person is not None
    contact_id, email = tuple(person)
    user = f"user-{contact_id}"
    identified = await stack.http.post(
        "/v1/identify",
        json={"userId": user, "traits": {"email": email}, "messageId": uuid.uuid4().hex},
    )
    assert identified.status_code == 200, identified.text
    tracked = await stack.http.post(
        "/v1/track",
        json={"userId": user, "event": "Cart Abandoned", "messageId": uuid.uuid4().hex,
              "properties": {"products": [{"sku": "KIT-103"}]}},
    )  # fmt: skip
    assert tracked.status_code == 200, tracked.text
    await env.sleep(timedelta(hours=2))  # the reminder goes after an hour
    handle = stack.client.get_workflow_handle_for(
        JourneyWorkflow.run, journey_workflow_id("demo", "cart_abandonment", contact_id)
    )
    await env.sleep(timedelta(days=7))
    assert (await handle.result()).emails_sent == 1
    return stack.trace_of("POST /v1/track")


@activity.defn(name="tracing_probe")
async def _probe() -> None:
    return None


@workflow.defn(name="TracingProbe", sandboxed=False)
class _FailsAfterAnActivity:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(_probe, start_to_close_timeout=timedelta(seconds=30))
        await workflow.execute_activity(_probe, start_to_close_timeout=timedelta(seconds=30))
        raise ApplicationError("planned failure", non_retryable=True)


async def test_a_failed_run_keeps_its_completion_span_and_activities_hang_under_the_run(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    exporter = InMemorySpanExporter()
    on = tracing.start("tailor-test", exporter, batch=False)
    try:
        config = time_skipping_env.client.config()
        config["interceptors"] = on.interceptors()
        client = Client(**config)
        queue = task_queue()
        async with Worker(
            client, task_queue=queue, workflows=[_FailsAfterAnActivity], activities=[_probe]
        ):
            with pytest.raises(WorkflowFailureError):
                await client.execute_workflow(
                    _FailsAfterAnActivity.run, id=f"probe-{uuid.uuid4().hex}", task_queue=queue
                )
    finally:
        on.close()
    spans = exporter.get_finished_spans()
    by_id = _check_tree(list(spans))
    assert _parents(list(spans), by_id) == {
        ("RunWorkflow:TracingProbe", "StartWorkflow:TracingProbe"),
        ("RunActivity:tracing_probe", "RunWorkflow:TracingProbe"),
        ("CompleteWorkflow:TracingProbe", "StartWorkflow:TracingProbe"),
    }
    assert [s.name for s in spans].count("RunActivity:tracing_probe") == 2
    complete = next(s for s in spans if s.name.startswith("CompleteWorkflow:"))
    assert [e.name for e in complete.events] == ["exception"]


def test_scrubbing_takes_out_what_instrumentations_record_of_a_person() -> None:
    clean = tracing.scrub({
        "client.address": "203.0.113.9", "user_agent.original": "Mozilla/5.0 (iPhone)",
        "http.url": "https://api.example/v1/contacts?email=ana%40example.com",
        "url.query": "email=ana@example.com", "http.target": "/t/o/abc?x=ana@example.com",
        "exception.message": "550 ana.lopez@example.com: mailbox unavailable",
        "tailor.emails": 3, "db.statement": "SELECT id FROM contact WHERE email = ?",
    })  # fmt: skip
    assert clean == {
        "http.url": "https://api.example/v1/contacts",
        "http.target": "/t/o/abc",
        "exception.message": "550 [email]: mailbox unavailable",
        "tailor.emails": 3,
        "db.statement": "SELECT id FROM contact WHERE email = ?",
    }


def test_off_unless_the_standard_variable_names_an_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert tracing.start_from_environment("tailor-test") is None
    assert tracing.active() is None
    with tracing.step("plan", campaign="c1") as span:  # no provider: a shared no-op span
        assert not span.is_recording()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.enabled_by_environment()
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    assert tracing.enabled_by_environment()


def test_sampling_follows_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    assert "TraceIdRatioBased{0.25}" in tracing.configured_sampler().get_description()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    assert tracing.configured_sampler().get_description() == "AlwaysOffSampler"
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "sometimes")
    with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER"):
        tracing.configured_sampler()


def test_spans_go_over_otlp_to_the_endpoint_the_standard_variable_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real OTLP/HTTP exchange: a loopback collector receives the protobuf export, with the
    service name and the step's attributes, and the client's IP address taken out."""
    collector = SpanCollector(keep=True)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    try:
        on = tracing.start_from_environment("tailor-worker")
        assert on is not None and tracing.active() is on
        with on.tracer.start_as_current_span("RunActivity:send_chunk") as activity:
            activity.set_attribute("client.address", "203.0.113.9")
            with tracing.step("deliver", provider="smtp") as span:
                tracing.note(span, accepted=3)
        on.close()  # flushes the batch
    finally:
        collector.close()
    assert {path for path, _ in collector.exports} == {"/v1/traces"}
    request = ExportTraceServiceRequest()
    for _, export in collector.exports:
        request.MergeFrom(export)
    (resource,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "tailor-worker"
    spans = {s.name: s for scope in resource.scope_spans for s in scope.spans}
    assert set(spans) == {"RunActivity:send_chunk", "deliver"}
    assert spans["deliver"].parent_span_id == spans["RunActivity:send_chunk"].span_id
    deliver = {a.key: a.value for a in spans["deliver"].attributes}
    assert deliver["tailor.provider"].string_value == "smtp"
    assert deliver["tailor.accepted"].int_value == 3
    assert not spans["RunActivity:send_chunk"].attributes  # the IP address did not leave
