"""``tailor bench campaign``: throughput of a batch campaign on the embedded default.

Runs in a fresh state folder: a Temporal dev server (SQLite), the SMTP capture server and one
worker as separate processes, like ``tailor server``. Reports emails/s, wall time and peak RSS,
and, in the same run, the throughput of a plain loop that renders and delivers the same emails
to the same sink without Temporal or send bookkeeping — the cost of durability is the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.client import Client

from tailor.cli.processes import free_port
from tailor.cli.stack import LocalStack, Ports
from tailor.config import Settings
from tailor.db import Database, migrate
from tailor.delivery.mime import MailParts, render_message
from tailor.delivery.providers import http_provider
from tailor.delivery.providers.base import OutgoingEmail
from tailor.delivery.smtp import Outcome, SmtpDelivery
from tailor.demo.seed import seed_demo
from tailor.devtools.esp_stub import STUB_SENDGRID_KEY
from tailor.devtools.llm_stub import running_stub
from tailor.models import Contact, utcnow
from tailor.personalise.context import CampaignContext, CampaignContexts
from tailor.personalise.rules import RuleBasedExecutor
from tailor.sending.compose import mail_parts
from tailor.sending.guardrail import Guardrail
from tailor.store.campaigns import create_campaign, send_counts
from tailor.store.generation import generation_stats
from tailor.store.profiles import first_contacts
from tailor.temporal.campaigns import CampaignControl
from tailor.temporal.client import connect


class RssSampler:
    """Peak resident memory of a set of processes, sampled every 100 ms on a thread."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for name, pid in list(self.pids.items()):
                try:
                    rss = psutil.Process(pid).memory_info().rss / 2**20
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak.get(name, 0.0), rss)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class _PlainLoop:
    """What a plain loop does per recipient, without Temporal or send bookkeeping: render the
    template with the rules tier and add the legal footer and headers."""

    def __init__(self, settings: Settings, ctx: CampaignContext) -> None:
        self.ctx = ctx
        self._executor = RuleBasedExecutor()
        self._guardrail = Guardrail(
            public_url=settings.public_url, secret=settings.unsubscribe_secret
        )

    def parts(self, contact: Contact) -> MailParts:
        ctx = self.ctx
        content = self._executor.personalise(
            contact=contact, version=ctx.version, catalog=ctx.catalog,
            tenant_name=ctx.tenant.name, now=utcnow(),
        )  # fmt: skip
        compliance = self._guardrail.compliance(
            campaign_id="baseline", contact_id=contact.id or 0,
            tenant_name=ctx.tenant.name, postal_address=ctx.tenant.postal_address,
        )  # fmt: skip
        return mail_parts(
            content=content, compliance=compliance, campaign_id="baseline",
            message_id=f"<baseline.{contact.id}@{ctx.sender_domain}>",
        )  # fmt: skip


async def _first_contacts(db: Database, tenant_id: str, limit: int) -> list[Contact]:
    async with db.read_session() as session:
        return await first_contacts(session=session, tenant_id=tenant_id, limit=limit)


async def _baseline(settings: Settings, campaign_id: str, limit: int) -> float:
    """Render + deliver ``limit`` emails over SMTP in a plain asyncio loop; emails per second."""
    db = Database(settings.resolved_database_url)
    try:
        plain = _PlainLoop(settings, await CampaignContexts(db).get(campaign_id))
        tenant = plain.ctx.tenant
        contacts = await _first_contacts(db, tenant.id, limit)
        delivery = SmtpDelivery(settings)
        queue: asyncio.Queue[Contact] = asyncio.Queue()
        for contact in contacts:
            queue.put_nowait(contact)

        async def always(end_of_data: Callable[[], None]) -> bool:
            end_of_data()
            return True

        async def loop() -> None:
            async with delivery.session() as session:
                while not queue.empty():
                    contact = queue.get_nowait()
                    message = render_message(
                        plain.parts(contact), from_name=tenant.from_name,
                        from_email=tenant.from_email, to_email=contact.email, sent_at=utcnow(),
                    )  # fmt: skip
                    result = await session.send(
                        mail_from=tenant.from_email, rcpt_to=contact.email,
                        message=message, claim=always,
                    )  # fmt: skip
                    assert result.outcome is Outcome.ACCEPTED, result

        started = time.monotonic()
        # As many SMTP sessions as the campaign runs at once (chunks in flight x sessions each).
        sessions = settings.chunk_concurrency * settings.smtp_connections
        await asyncio.gather(*(loop() for _ in range(sessions)))
        return len(contacts) / (time.monotonic() - started)
    finally:
        await db.dispose()


async def _baseline_http(settings: Settings, campaign_id: str, limit: int) -> float:
    """Render + post ``limit`` emails to the HTTP provider in a plain loop: the campaign's
    batch size, as many requests in flight as the campaign's chunks; emails per second."""
    db = Database(settings.resolved_database_url)
    provider = http_provider(settings.providers[0], settings)
    try:
        plain = _PlainLoop(settings, await CampaignContexts(db).get(campaign_id))
        tenant = plain.ctx.tenant
        contacts = await _first_contacts(db, tenant.id, limit)
        pending = [
            contacts[i : i + settings.chunk_size]
            for i in range(0, len(contacts), settings.chunk_size)
        ]

        def email(contact: Contact) -> OutgoingEmail:
            parts = plain.parts(contact)
            return OutgoingEmail(
                send_id=contact.id or 0, tenant_id=tenant.id, campaign_id="baseline",
                to_email=contact.email, from_email=tenant.from_email,
                from_name=tenant.from_name, subject=parts.subject, text=parts.text,
                html=parts.html, headers=parts.headers,
            )  # fmt: skip

        async def lane() -> None:
            while pending:
                result = await provider.send_batch([email(c) for c in pending.pop(0)])
                assert not result.provider_failed, result.results[:1]

        started = time.monotonic()
        await asyncio.gather(*(lane() for _ in range(settings.chunk_concurrency)))
        return len(contacts) / (time.monotonic() - started)
    finally:
        await provider.close()
        await db.dispose()


async def chunk_latencies(client: Client, workflow_id: str) -> tuple[list[float], int]:
    """Each chunk activity's start-to-close seconds, over every run of the campaign (it
    continues as new), and the largest history of one run (in events)."""
    latencies: list[float] = []
    largest = 0
    async for execution in client.list_workflows(f'WorkflowId = "{workflow_id}"'):
        handle = client.get_workflow_handle(workflow_id, run_id=execution.run_id)
        chunks: set[int] = set()  # scheduled event ids of send_chunk activities
        started: dict[int, float] = {}
        events = 0
        async for event in handle.fetch_history_events():
            events += 1
            if event.HasField("activity_task_scheduled_event_attributes"):
                kind = event.activity_task_scheduled_event_attributes.activity_type.name
                if kind == "send_chunk":
                    chunks.add(event.event_id)
            elif event.HasField("activity_task_started_event_attributes"):
                attrs = event.activity_task_started_event_attributes
                if attrs.scheduled_event_id in chunks:
                    started[attrs.scheduled_event_id] = event.event_time.ToDatetime().timestamp()
            elif event.HasField("activity_task_completed_event_attributes"):
                done = event.activity_task_completed_event_attributes
                begun = started.get(done.scheduled_event_id)
                if begun is not None:
                    latencies.append(event.event_time.ToDatetime().timestamp() - begun)
        largest = max(largest, events)
    return latencies, largest


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def _measure(
    stack: LocalStack, settings: Settings, contacts: int, baseline_n: int, console: Console,
    sampler: RssSampler,
) -> dict[str, Any]:  # fmt: skip
    db = Database(settings.resolved_database_url)
    try:
        seed_started = time.monotonic()
        with Progress(
            TextColumn("Seeding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("seed", total=contacts)
            seeded = await seed_demo(
                db, contacts=contacts, on_progress=lambda n: progress.update(task, completed=n)
            )
        seed_seconds = time.monotonic() - seed_started
        async with db.session() as session:
            campaign = await create_campaign(
                session=session, tenant_id=seeded.tenant_id, name="bench",
                template_version_id=seeded.template_version_id, segment={},
            )  # fmt: skip
        client = await connect(settings)
        await stack.wait_for_worker(client, settings.temporal_task_queue)
        control = CampaignControl(client, settings)

        started = time.monotonic()
        await control.start(campaign)
        handle = control.handle(campaign)
        with Progress(
            TextColumn("Campaign"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console,
        ) as progress:  # fmt: skip
            task = progress.add_task("send", total=contacts, rate="")
            result = asyncio.ensure_future(handle.result())
            queries: list[float] = []  # what an operator's progress query costs, mid-campaign
            while not result.done():
                asked = time.monotonic()
                live = await control.progress(campaign)
                if live is not None:
                    queries.append(time.monotonic() - asked)
                async with db.read() as conn:
                    counts = await send_counts(conn, campaign_id=campaign.id)
                done = sum(n for status, n in counts.items() if status != "pending")
                rate = done / max(time.monotonic() - started, 1e-6)
                progress.update(task, completed=done, rate=f"{rate:,.0f}/s")
                await asyncio.wait([result], timeout=0.5)
            outcome = result.result()
        seconds = time.monotonic() - started
        processed = outcome.sent + outcome.suppressed + outcome.failed

        async with db.read() as conn:
            generation = await generation_stats(conn, campaign_id=campaign.id)
        latencies, events = await chunk_latencies(client, campaign.workflow_id)
        with console.status(f"Baseline: plain loop over {baseline_n:,} emails…"):
            if settings.providers[0] == "smtp":
                baseline = await _baseline(settings, campaign.id, baseline_n)
            else:
                baseline = await _baseline_http(settings, campaign.id, baseline_n)
        emails_per_s = outcome.sent / seconds
        return {
            "contacts": contacts,
            "sent": outcome.sent,
            "suppressed": outcome.suppressed,
            "failed": outcome.failed,
            "processed": processed,
            "seconds": round(seconds, 2),
            "emails_per_s": round(emails_per_s, 1),
            "baseline_contacts": baseline_n,
            "baseline_emails_per_s": round(baseline, 1),
            "ratio": round(emails_per_s / baseline, 3),
            "peak_rss_mb": round(sampler.peak.get("worker", 0.0), 1),
            "peak_rss_mb_by_process": {k: round(v, 1) for k, v in sampler.peak.items()},
            "seed_seconds": round(seed_seconds, 2),
            "generation": generation,
            "chunk_size": settings.chunk_size,
            "chunk_concurrency": settings.chunk_concurrency,
            "smtp_connections": settings.smtp_connections,
            "provider": settings.providers[0],
            "chunks": len(latencies),
            "chunk_p50_s": _percentile(latencies, 0.50),
            "chunk_p95_s": _percentile(latencies, 0.95),
            "history_events": events,
            "progress_query_p95_ms": round((_percentile(queries, 0.95) or 0) * 1000, 1),
        }
    finally:
        await db.dispose()


def campaign_report(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """One bench campaign on a fresh stack (its processes read ``os.environ``)."""
    home = Path(tempfile.mkdtemp(prefix="tailor-bench-"))
    stack = LocalStack(home, Ports.from_args(args), with_ui=False)  # fmt: skip
    sampler = RssSampler()
    llm_stub = contextlib.ExitStack()
    try:
        if args.llm_stub:
            # The loopback stand-in for an OpenAI-compatible provider, priced as gpt-4o-mini.
            stub = llm_stub.enter_context(running_stub())
            os.environ.update(
                TAILOR_LLM_BASE_URL=f"{stub.url}/v1",
                TAILOR_OPENAI_API_KEY="stub",
                TAILOR_OPENAI_MODEL="gpt-4o-mini",
            )
        if args.provider == "sendgrid":
            esp_port = free_port()
            os.environ.update(
                TAILOR_PROVIDERS='["sendgrid"]',
                TAILOR_SENDGRID_API_KEY=STUB_SENDGRID_KEY,
                TAILOR_SENDGRID_BASE_URL=f"http://127.0.0.1:{esp_port}",
            )
        stack.check_ports(api=False)
        settings = stack.settings()
        asyncio.run(migrate(settings.resolved_database_url))
        with console.status("Starting Temporal dev server, SMTP capture server and worker…"):
            stack.start_temporal()
            stack.start_sink()
            if args.provider == "sendgrid":
                stack.start_esp_stub(esp_port)
            stack.start_worker()
        for service in stack.group.services:
            sampler.pids[service.name] = service.proc.pid
        sampler.start()
        baseline_n = args.baseline_contacts or min(args.contacts, 20_000)
        return asyncio.run(_measure(stack, settings, args.contacts, baseline_n, console, sampler))
    finally:
        sampler.stop()
        stack.group.stop()
        llm_stub.close()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def run_campaign_bench(args: argparse.Namespace) -> int:
    console = Console(stderr=args.json, soft_wrap=True)
    report = campaign_report(args, console)
    console.print(
        f"{report['sent']:,} emails in {report['seconds']}s = "
        f"[bold]{report['emails_per_s']:,}/s[/bold]; plain loop without Temporal "
        f"{report['baseline_emails_per_s']:,}/s; ratio {report['ratio']}; "
        f"p95 chunk {report['chunk_p95_s']}s; worker peak RSS {report['peak_rss_mb']} MB "
        f"(provider: {report['provider']})"
    )
    generation = report["generation"]
    if generation["llm_calls"] or generation["cache_hits"]:
        console.print(
            f"LLM: {generation['llm_calls']} calls, cache hit rate "
            f"{generation['cache_hit_rate']:.1%}, ${generation['cost_usd']:.4f} in all, "
            f"${generation['cost_per_1k_usd']:.4f} per 1K emails; by tier "
            f"{generation['by_generator']}"
        )
    if args.json:
        print(json.dumps(report), flush=True)  # noqa: T201  (the machine-readable last line)
    return 0 if report["failed"] == 0 else 1
