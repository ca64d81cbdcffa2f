"""``tailor bench trigger``: event-to-inbox latency of a zero-delay journey, rules tier.

Runs in a fresh state folder: a Temporal dev server (SQLite), the SMTP capture server, one
worker and the API as separate processes, like ``tailor server``. Each event is a different
person (so the daily limit never defers a send) who triggers a one-step journey that sends
right away. Events go out open-loop at ``--rate``: t0 is taken just before each POST
/v1/track, t1 is when the capture server stored that person's email, just before its 250.
A sample of workflow histories splits the latency into its phases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tailor.cli.accounts import tool_key
from tailor.cli.bench import RssSampler
from tailor.cli.processes import StartupError
from tailor.cli.stack import HOST, LocalStack, Ports
from tailor.config import Settings
from tailor.db import Database, migrate
from tailor.demo.seed import seed_demo
from tailor.journeys.definitions import JourneySpec, RuleSpec, SendStep, journey_workflow_id
from tailor.models import Role
from tailor.store.consent import consenting_contacts
from tailor.store.journeys import create_definition, create_rule
from tailor.temporal.client import connect

EVENT = "bench.signup"
JOURNEY = "bench_signup"
WARMUP = 10  # events before the measured ones, not counted: connections, caches, first imports
GRACE_S = 30.0  # after the last event, how long an email may still take before it is "missing"
PROFILE_SAMPLE = 50  # workflow histories read to split the latency into phases
CONSENT_RATE = 0.97  # the demo seed's; the seed is topped up if it falls short
# The worker runs the rules tier: no LLM key or base URL may reach it.
LLM_ENV = ("TAILOR_OPENAI_API_KEY", "TAILOR_LLM_BASE_URL", "TAILOR_ANTHROPIC_API_KEY")
# The phases between t0 (POST) and t1 (SMTP accepted), in order; each is a mark in the history.
MARKS = (
    "t0",
    "workflow_started",
    "start_journey_scheduled",
    "start_journey_started",
    "start_journey_completed",
    "send_email_scheduled",
    "send_email_started",
    "t1",
)


@dataclass(frozen=True)
class Person:
    contact_id: int
    email: str

    @property
    def user_id(self) -> str:
        return f"bench-{self.contact_id}"


@dataclass
class Sample:
    person: Person
    t0_ns: int = 0
    api_ms: float | None = None  # POST /v1/track response time; None until answered
    error: str | None = None  # the API's answer when it was not 200 accepted=1
    t1_ns: int | None = None  # when the sink stored the email


class Outbox:
    """Arrivals in the capture server's Maildir, by recipient.

    The acceptance time is read from what the sink writes anyway: the Maildir file name starts
    with the time the message's storage began (microseconds), and the file's ctime is when it
    was linked into ``new/``, right before the 250 reply. The later of the two is used (ctime
    can be a clock tick coarse on older kernels; the name predates the fsync).
    """

    def __init__(self, maildir: Path) -> None:
        self._new = maildir / "new"
        self._seen: set[str] = set()
        self._parser = BytesHeaderParser()

    def poll(self) -> dict[str, int]:
        """Emails stored since the last poll: recipient address -> acceptance time (ns)."""
        arrived: dict[str, int] = {}
        if not self._new.is_dir():
            return arrived
        with os.scandir(self._new) as entries:
            for entry in entries:
                if entry.name in self._seen:
                    continue
                self._seen.add(entry.name)
                with open(entry.path, "rb") as fh:
                    headers = self._parser.parse(fh)
                address = parseaddr(str(headers["To"]))[1].lower()
                arrived[address] = max(_name_time_ns(entry.name), entry.stat().st_ctime_ns)
        return arrived


def _name_time_ns(name: str) -> int:
    """``1718000000.M123456P42Q7.host`` -> 1718000000123456000 (Python's Maildir key)."""
    seconds, rest = name.split(".", 1)
    micros = rest[1:].split("P", 1)[0]
    return int(seconds) * 10**9 + int(micros) * 1000


class CpuMeter:
    """CPU each service used over a window, in cores (1.0 = one core busy throughout)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._start: dict[str, float] = {}
        self._began = 0.0

    def _times(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, proc in self._procs.items():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                out[name] = times.user + times.system
        return out

    def start(self) -> None:
        self._start, self._began = self._times(), time.monotonic()

    def cores(self) -> dict[str, float]:
        wall = time.monotonic() - self._began
        end = self._times()
        return {k: round((end[k] - self._start[k]) / wall, 2) for k in end if k in self._start}


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: a value that was measured, defined for any non-empty list."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


async def _prepare(db: Database, needed: int, console: Console) -> tuple[str, list[Person]]:
    """Seed enough consenting contacts, define the journey and its rule; ``needed`` people."""
    contacts = math.ceil(needed / CONSENT_RATE * 1.05) + 20
    with Progress(
        TextColumn("Seeding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("seed", total=contacts)
        while True:
            seeded = await seed_demo(
                db, contacts=contacts, on_progress=lambda n: progress.update(task, completed=n)
            )
            if seeded.consenting >= needed:
                break
            contacts = math.ceil(contacts * 1.2)
            progress.update(task, total=contacts)
    async with db.read() as conn:
        found = await consenting_contacts(conn, tenant_id=seeded.tenant_id, limit=needed)
        people = [Person(c.id, c.email.lower()) for c in found]
    async with db.session() as session:
        spec = JourneySpec(
            key=JOURNEY,
            name="Bench: send on signup",
            steps=[SendStep(name="hello", goal="welcome_1", send_time="now")],
        )
        await create_definition(session=session, tenant_id=seeded.tenant_id, spec=spec)
        await create_rule(
            session=session, tenant_id=seeded.tenant_id,
            spec=RuleSpec(event=EVENT, journey_key=JOURNEY),
        )  # fmt: skip
    return seeded.tenant_id, people


async def _identify(http: httpx.AsyncClient, people: list[Person], api_log: Path) -> None:
    """Link every person's userId to their contact, 1,000 per /v1/batch call."""
    for start in range(0, len(people), 1000):
        calls = [
            {"type": "identify", "userId": p.user_id, "traits": {"email": p.email},
             "messageId": f"identify-{p.contact_id}"}
            for p in people[start : start + 1000]
        ]  # fmt: skip
        response = await http.post("/v1/batch", json={"batch": calls})
        if response.status_code != 200:
            raise StartupError(
                f"identify batch answered {response.status_code} {response.text[:200]}; "
                f"see {api_log}"
            )


async def _track(http: httpx.AsyncClient, sample: Sample) -> None:
    body = {"userId": sample.person.user_id, "event": EVENT,
            "messageId": f"bench-{sample.person.contact_id}"}  # fmt: skip
    sample.t0_ns = time.time_ns()
    try:
        response = await http.post("/v1/track", json=body)
    except httpx.HTTPError as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
        return
    sample.api_ms = (time.time_ns() - sample.t0_ns) / 1e6
    if response.status_code != 200 or response.json().get("accepted") != 1:
        sample.error = f"{response.status_code} {response.text[:200]}"


async def _run(
    http: httpx.AsyncClient,
    samples: list[Sample],
    rate: float,
    outbox: Outbox,
    on_progress: Callable[[int, int], None],
) -> tuple[float, float]:
    """Fire the events open-loop at ``rate`` (each on its wall-clock slot, not after the one
    before finishes) and collect arrivals until all are in or the grace period is over.
    Returns (achieved rate, seconds spent sending)."""
    by_address = {s.person.email: s for s in samples}
    posts: list[asyncio.Task[None]] = []

    async def fire() -> None:
        start = time.monotonic()
        for i, sample in enumerate(samples):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            posts.append(asyncio.create_task(_track(http, sample)))

    def collect() -> int:
        for address, t1 in outbox.poll().items():
            if address in by_address:
                by_address[address].t1_ns = t1
        arrived = sum(s.t1_ns is not None for s in samples)
        on_progress(len(posts), arrived)
        return arrived

    sending = asyncio.create_task(fire())
    while not sending.done():
        collect()
        await asyncio.wait([sending], timeout=0.05)
    await sending
    await asyncio.gather(*posts)
    first, last = samples[0].t0_ns, samples[-1].t0_ns
    achieved = (len(samples) - 1) / ((last - first) / 1e9) if last > first else float(rate)
    deadline = time.monotonic() + GRACE_S
    while collect() < len(samples) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return achieved, (last - first) / 1e9


async def _marks(client: Client, workflow_id: str) -> dict[str, int]:
    """Server timestamps (ns) of a journey's milestones up to its send's start."""
    marks: dict[str, int] = {}
    activity_of: dict[int, str] = {}
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    for event in history.events:
        at = event.event_time.ToNanoseconds()
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            marks["workflow_started"] = at
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            activity_of[event.event_id] = name
            marks.setdefault(f"{name}_scheduled", at)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            name = activity_of[event.activity_task_started_event_attributes.scheduled_event_id]
            marks.setdefault(f"{name}_started", at)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            name = activity_of[event.activity_task_completed_event_attributes.scheduled_event_id]
            marks.setdefault(f"{name}_completed", at)
    return marks


async def _phases(client: Client, tenant_id: str, samples: list[Sample]) -> dict[str, Any]:
    """p50/p95 of each step from t0 to t1 over an evenly spaced sample of the journeys."""
    arrived = [s for s in samples if s.t1_ns is not None]
    step = max(len(arrived) // PROFILE_SAMPLE, 1)
    timelines: list[dict[str, int]] = []
    for sample in arrived[::step][:PROFILE_SAMPLE]:
        wid = journey_workflow_id(tenant_id, JOURNEY, sample.person.contact_id)
        assert sample.t1_ns is not None
        marks = await _marks(client, wid) | {"t0": sample.t0_ns, "t1": sample.t1_ns}
        timelines.append({m: marks[m] for m in MARKS if m in marks})
    # The usual shape only: a local activity leaves no marks of its own, and an activity
    # still running when its history is read has no started event yet.
    shapes = Counter(tuple(t) for t in timelines)
    shape = shapes.most_common(1)[0][0] if shapes else ()
    usual = [t for t in timelines if tuple(t) == shape]
    phases: dict[str, Any] = {}
    for before, after in zip(shape, shape[1:], strict=False):
        took = [(t[after] - t[before]) / 1e6 for t in usual]
        phases[f"{before}->{after}"] = {
            "p50_ms": round(percentile(took, 50), 1),
            "p95_ms": round(percentile(took, 95), 1),
        }
    return phases | {"sampled": len(usual)}


async def _measure(
    stack: LocalStack, settings: Settings, rate: int, seconds: int, console: Console
) -> dict[str, Any]:  # fmt: skip
    events = rate * seconds
    db = Database(settings.resolved_database_url)
    try:
        tenant_id, people = await _prepare(db, WARMUP + events, console)
        key = await tool_key(db, tenant_id=tenant_id, role=Role.INGEST, name="tailor bench trigger")
    finally:
        await db.dispose()
    client = await connect(settings)
    await stack.wait_for_worker(client, settings.temporal_task_queue)
    api_log = stack.home / "logs" / "api.log"
    outbox = Outbox(settings.outbox_dir)
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{stack.ports.api}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        # Open-loop: never queue a request behind the pool, that would hide the API's latency.
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=200),
    ) as http:
        with console.status(f"Identifying {len(people):,} people…"):
            await _identify(http, people, api_log)
        with console.status(f"Warming up with {WARMUP} events…"):
            warmup = [Sample(p) for p in people[:WARMUP]]
            await _run(http, warmup, rate, outbox, lambda *_: None)
        if any(s.t1_ns is None for s in warmup):
            error = next((s.error for s in warmup if s.error), "the API accepted them")
            raise StartupError(
                f"warm-up emails never reached the SMTP capture server ({error}); rerun with "
                f"--keep and see {api_log} and {stack.home / 'logs' / 'worker.log'}"
            )
        samples = [Sample(p) for p in people[WARMUP:]]
        with Progress(
            TextColumn("Events"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[sent]}"), TimeElapsedColumn(), console=console,
        ) as progress:  # fmt: skip
            task = progress.add_task("events", total=events, sent="")

            def show(sent: int, arrived: int) -> None:
                progress.update(task, completed=arrived, sent=f"{sent:,} sent")

            cpu = CpuMeter(
                {s.name: s.proc.pid for s in stack.group.services} | {"bench": os.getpid()}
            )
            cpu.start()
            achieved, sending_s = await _run(http, samples, rate, outbox, show)
            cores = cpu.cores()
    with console.status("Reading workflow histories…"):
        phases = await _phases(client, tenant_id, samples)
    # A missing email counts as slower than any that arrived, so an overloaded run cannot
    # report the survivors' percentiles; a percentile that lands on one is null ("lost").
    latencies = [(s.t1_ns - s.t0_ns) / 1e6 if s.t1_ns is not None else math.inf for s in samples]
    arrived = sum(s.t1_ns is not None for s in samples)
    api = [s.api_ms for s in samples if s.api_ms is not None]
    errors = [s.error for s in samples if s.error]

    def ms(values: list[float], q: float) -> float | None:
        value = percentile(values, q) if values else math.inf
        return round(value, 1) if math.isfinite(value) else None

    return {
        "events": events,
        "arrived": arrived,
        "missing": events - arrived,
        "p50_ms": ms(latencies, 50),
        "p95_ms": ms(latencies, 95),
        "p99_ms": ms(latencies, 99),
        "max_ms": ms(latencies, 100),
        "mean_ms": round(sum(latencies) / arrived, 1) if arrived == events else None,
        "rate": rate,
        "rate_achieved": round(achieved, 1),
        "sending_seconds": round(sending_s, 2),
        "api_p50_ms": ms(api, 50),
        "api_p95_ms": ms(api, 95),
        "api_errors": len(errors),
        "first_api_error": errors[0] if errors else None,
        "warmup_events": WARMUP,
        "grace_seconds": GRACE_S,
        "tier": "rules",
        "rag_enabled": settings.rag_enabled,
        "phases": phases,
        "cpu_cores": cores,  # while measured, by process; the host has os.cpu_count()
        "host_cpus": os.cpu_count(),
    }


def trigger_report(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """One trigger bench on a fresh stack (its processes read ``os.environ``); with
    ``args.keep`` the state folder is kept and named in the report."""
    load_before = round(os.getloadavg()[0], 2)  # other work on the host skews every figure
    home = Path(tempfile.mkdtemp(prefix="tailor-bench-trigger-"))
    stack = LocalStack(home, Ports.from_args(args), with_ui=False)
    sampler = RssSampler()
    for key in LLM_ENV:
        os.environ.pop(key, None)
    # Retrieval is cached per cluster, but each new cluster's first query embeds on the send
    # path: off unless asked for, so the figure is the trigger path's own.
    os.environ["TAILOR_RAG_ENABLED"] = "true" if args.rag else "false"
    try:
        stack.check_ports(api=True)
        settings = stack.settings()
        asyncio.run(migrate(settings.resolved_database_url))
        with console.status("Starting Temporal dev server, SMTP capture server, worker, API…"):
            stack.start_temporal()
            stack.start_sink()
            stack.start_worker()
            stack.start_api()
        for service in stack.group.services:
            sampler.pids[service.name] = service.proc.pid
        sampler.start()
        report = asyncio.run(_measure(stack, settings, args.rate, args.seconds, console))
        report["peak_rss_mb_by_process"] = {k: round(v, 1) for k, v in sampler.peak.items()}
        report["load_avg_1m_before"] = load_before
        report["state_folder"] = str(home) if args.keep else None
        return report
    finally:
        sampler.stop()
        stack.group.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def run_trigger_bench(args: argparse.Namespace) -> int:
    console = Console(stderr=args.json, soft_wrap=True)
    report = trigger_report(args, console)
    shown = {k: "lost" if report[k] is None else f"{report[k]} ms"
             for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")}  # fmt: skip
    table = Table(title=f"Event accepted by the API → email accepted by SMTP "
                        f"({report['rate_achieved']}/s asked {report['rate']}/s)")  # fmt: skip
    for column in ("events", "arrived", "p50", "p95", "p99", "max", "API p95"):
        table.add_column(column, justify="right")
    table.add_row(f"{report['events']:,}", f"{report['arrived']:,}", shown["p50_ms"],
                  shown["p95_ms"], shown["p99_ms"], shown["max_ms"],
                  f"{report['api_p95_ms']} ms")  # fmt: skip
    console.print(table)
    phases = report["phases"]
    console.print(
        f"Phases (p50/p95 ms over {phases['sampled']} journeys): "
        + "; ".join(
            f"{name} {v['p50_ms']}/{v['p95_ms']}"
            for name, v in phases.items()
            if isinstance(v, dict)
        )
    )
    if report["missing"] or report["api_errors"]:
        console.print(
            f"[red]{report['missing']} emails never arrived within {GRACE_S:.0f}s, "
            f"{report['api_errors']} API errors (first: {report['first_api_error']}); rerun "
            "with --keep and read the logs in the state folder[/red]"
        )
    if report["state_folder"]:
        console.print(f"State folder kept: {report['state_folder']}")
    if args.json:
        print(json.dumps(report), flush=True)  # noqa: T201  (the machine-readable last line)
    return 0 if report["missing"] == 0 and report["api_errors"] == 0 else 1
