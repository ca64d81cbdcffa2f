"""Tailor's traces: OpenTelemetry, exported over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

One trace follows a request or a workflow run across processes: the FastAPI request, the
Temporal client's start or signal (``temporalio.contrib.opentelemetry`` carries the context in
Temporal headers), the workflow, each activity, and in them the HTTP calls (LLM tiers, ESPs,
a Qdrant server), the database statements, and Tailor's own steps (``step`` below: plan,
personalise, generate, retrieve, evaluate, guard, claim, deliver), and each LLM request
(``llm_call``: the LLM SDKs send through ``httpx2``, which no instrumentation covers).

Off, which is the default, nothing is installed: no instrumentation, no interceptor, and
``step`` hands out one shared non-recording span. On, sampling follows the standard variables
(``OTEL_TRACES_SAMPLER``, ``OTEL_TRACES_SAMPLER_ARG``), and so do the service name and resource
(``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) and the exporter's endpoint and headers.

Spans carry ids, never personal data. What the instrumentations would record of a person is
taken out before export (``WithoutPersonalData``): the client's IP address and user agent (a
tracked open's are the reader's), query strings (they may hold an address), and anything that
looks like an email address, in attributes and in exception events alike.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Tracer
from opentelemetry.util.types import Attributes, AttributeValue

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.engine import Engine
    from temporalio.client import Interceptor

SCOPE = "tailor"
# Routes that are polled, not used: a span each would bury the requests people make.
UNTRACED_ROUTES = "/metrics,/healthz,/readyz"
# Temporal client calls made outside a request (the CLI, the outbound relay) start a trace.
_TEMPORAL_ROOTS = ("StartWorkflow:", "SignalWithStartWorkflow:", "SignalWorkflow:",
                   "QueryWorkflow:", "StartWorkflowUpdate:")  # fmt: skip
# What instrumentations record of the person at the other end of a request.
_PERSONAL_KEYS = frozenset({
    "client.address", "client.port", "net.peer.ip", "net.peer.port", "net.sock.peer.addr",
    "net.sock.peer.port", "http.client_ip", "user_agent.original", "http.user_agent",
    "network.peer.address", "network.peer.port", "url.query",
})  # fmt: skip
_URL_KEYS = frozenset({"http.url", "url.full", "http.target", "url.path"})
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _scrub_value(key: str, value: AttributeValue) -> AttributeValue:
    if isinstance(value, str):
        if key in _URL_KEYS:
            value = value.split("?", 1)[0]
        return _EMAIL.sub("[email]", value)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
        return [_EMAIL.sub("[email]", str(v)) for v in value]
    return value


def scrub(attributes: Attributes) -> dict[str, AttributeValue]:
    """The attributes a span may be exported with (see the module's docstring)."""
    return {
        key: _scrub_value(key, value)
        for key, value in (attributes or {}).items()
        if key not in _PERSONAL_KEYS
    }


class WithoutPersonalData(SpanExporter):
    """A span exporter that exports through ``inner`` what ``scrub`` leaves of each span."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        clean = [
            ReadableSpan(
                name=s.name,
                context=s.context,
                parent=s.parent,
                resource=s.resource,
                attributes=scrub(s.attributes),
                kind=s.kind,
                status=s.status,
                links=s.links,
                events=[Event(e.name, scrub(e.attributes), e.timestamp) for e in s.events],
                start_time=s.start_time,
                end_time=s.end_time,
                instrumentation_scope=s.instrumentation_scope,
            )  # fmt: skip
            for s in spans
        ]
        return self.inner.export(clean)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


def configured_sampler() -> Sampler:
    """The sampler the standard variables name (``parentbased_always_on`` when unset)."""
    name = os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    try:
        ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
    except ValueError:
        ratio = 1.0
    root = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF}.get(
        name.removeprefix("parentbased_"), TraceIdRatioBased(min(max(ratio, 0.0), 1.0))
    )
    if name not in {f"{p}{s}" for p in ("", "parentbased_")
                    for s in ("always_on", "always_off", "traceidratio")}:  # fmt: skip
        raise ValueError(
            f"OTEL_TRACES_SAMPLER={name!r} is not one Tailor knows: use always_on, always_off, "
            "traceidratio, or parentbased_ before any of them"
        )
    return ParentBased(root) if name.startswith("parentbased_") else root


def _sampler() -> Sampler:
    configured = configured_sampler()

    class NoOrphanCalls(Sampler):
        """The configured sampler (standard variables), except that a database statement or an
        HTTP call made outside any request, workflow or activity (a background loop polling)
        starts no trace: it would be a trace of one span, every second."""

        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            parent = trace.get_current_span(parent_context).get_span_context()
            if (
                not parent.is_valid
                and kind == SpanKind.CLIENT
                and not name.startswith(_TEMPORAL_ROOTS)
            ):
                return SamplingResult(Decision.DROP)
            return configured.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"NoOrphanCalls({configured.get_description()})"

    return NoOrphanCalls()


@dataclass
class Tracing:
    """Tracing switched on in this process: the provider and what was instrumented, so that
    ``close`` can undo it (tests switch it on and off)."""

    provider: TracerProvider
    tracer: Tracer
    _engines: list[Any] = field(default_factory=list)

    def interceptors(self) -> list[Interceptor]:
        """For ``Client.connect``: a worker made from the client gets the worker half too."""
        from tailor.observability.workflow_tracing import WorkflowTracing

        return [WorkflowTracing(self.provider.get_tracer("temporalio"))]

    def instrument_app(self, app: FastAPI) -> None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # Without a span per ASGI message sent and received: two to four a request, and no
        # question an operator asks is answered by them.
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self.provider, excluded_urls=UNTRACED_ROUTES,
            exclude_spans=["receive", "send"],
        )  # fmt: skip

    def instrument_engine(self, engine: Engine) -> None:
        """The SQLAlchemy instrumentation's own engine tracer, for each engine as Tailor makes
        it (its instrumentor patches ``create_engine``, which Tailor's engines do not pass
        through by that name), statements traced only inside a recorded span: the engine
        tracer works out a statement's attributes before it asks the sampler, which cost the
        trigger path about 15 ms of CPU a journey in traces that were not sampled
        (``tailor bench observability``)."""
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
        from opentelemetry.instrumentation.sqlalchemy.version import __version__ as version
        from opentelemetry.metrics import NoOpMeter

        class InRecordedSpans(EngineTracer):
            def _before_cur_exec(self, conn: Any, cursor: Any, statement: Any, params: Any,
                                 context: Any, executemany: Any) -> Any:  # fmt: skip
                if not trace.get_current_span().is_recording():
                    return statement, params  # no span: its after-hook finds none to end
                return super()._before_cur_exec(  # type: ignore[no-untyped-call]
                    conn, cursor, statement, params, context, executemany
                )

        tracer = self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy", version)
        usage = NoOpMeter("tailor").create_up_down_counter("db.client.connections.usage")
        self._engines.append(InRecordedSpans(tracer, engine, usage))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

        global _active
        HTTPXClientInstrumentor().uninstrument()
        if self._engines:
            EngineTracer.remove_all_event_listeners()  # type: ignore[no-untyped-call]
        self.provider.shutdown()
        if _active is self:
            _active = None


_active: Tracing | None = None


def active() -> Tracing | None:
    return _active


def enabled_by_environment() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def start(service: str, exporter: SpanExporter, *, batch: bool = True) -> Tracing:
    """Switch tracing on in this process, exporting through ``exporter`` (after
    ``WithoutPersonalData``). ``batch=False`` exports each span as it ends (tests)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    global _active
    if _active is not None:
        raise RuntimeError("tracing is already on in this process")
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(sampler=_sampler(), resource=Resource.create(named))
    clean = WithoutPersonalData(exporter)
    provider.add_span_processor(BatchSpanProcessor(clean) if batch else SimpleSpanProcessor(clean))
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _active = Tracing(provider, provider.get_tracer(SCOPE))
    return _active


def start_from_environment(service: str) -> Tracing | None:
    """On with the OTLP (HTTP/protobuf) exporter when the standard variables ask for it."""
    if not enabled_by_environment():
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return start(service, OTLPSpanExporter())


@contextmanager
def step(name: str, **attributes: AttributeValue) -> Iterator[Span]:
    """A span for one of Tailor's own steps, a child of whatever span is current; attributes
    are ids, counts and labels (``tailor.`` is prefixed to their names). Off: no span."""
    if _active is None:
        yield INVALID_SPAN
        return
    with _active.tracer.start_as_current_span(
        name, attributes={f"tailor.{k}": v for k, v in attributes.items()}
    ) as span:
        yield span


@contextmanager
def llm_call(provider: str, model: str) -> Iterator[Span]:
    """A client span for one LLM request, named and attributed by the OpenTelemetry GenAI
    conventions (never the prompt or the reply). By hand: the OpenAI and Anthropic SDKs send
    through ``httpx2``, which the httpx instrumentation does not see."""
    if _active is None:
        yield INVALID_SPAN
        return
    with _active.tracer.start_as_current_span(
        f"chat {model}",
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
        },  # fmt: skip
    ) as span:
        yield span


def note_usage(span: Span, input_tokens: int, output_tokens: int) -> None:
    if span.is_recording():
        span.set_attributes(
            {"gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens}
        )


def note(span: Span, **attributes: AttributeValue) -> None:
    """Add what a step learned (counts, a verdict) to its span."""
    if span.is_recording():
        span.set_attributes({f"tailor.{k}": v for k, v in attributes.items()})
