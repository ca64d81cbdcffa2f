"""``tailor demo`` and ``tailor server``: the local stack, and a demo campaign end to end."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tailor.cli.accounts import tool_key
from tailor.cli.demo_events import drive_journeys
from tailor.cli.processes import StartupError
from tailor.cli.stack import HOST, LocalStack, Ports
from tailor.config import Settings
from tailor.db import Database, migrate
from tailor.demo.seed import seed_demo
from tailor.models import Role
from tailor.temporal.client import connect


@contextmanager
def _exclusive(home: Path) -> Iterator[None]:
    """One demo or server per state folder: they share its databases and ports."""
    home.mkdir(parents=True, exist_ok=True)
    lock = (home / "run.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        owner = lock.read().strip() or "another process"
        raise StartupError(
            f"{home} is in use by a running tailor demo or server ({owner}); stop it "
            "(Ctrl-C) or pass --home with another folder"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}")
    lock.flush()
    try:
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _home(args: argparse.Namespace) -> Path:
    return Path(args.home) if args.home else Settings().home


def _start(stack: LocalStack, console: Console, *, sink: bool = True) -> Settings:
    stack.group.stop_leftovers()
    stack.check_ports(smtp=sink)
    settings = stack.settings()
    asyncio.run(migrate(settings.resolved_database_url))
    with console.status("Starting the Temporal dev server…"):
        stack.start_temporal()
    with console.status("Starting the SMTP capture server, worker and API…"):
        if sink:
            stack.start_sink()
        stack.start_worker()
        stack.start_api()
    return settings


def _serve_until_interrupted(stack: LocalStack, console: Console) -> int:
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    console.print("[dim]Serving. Press Ctrl-C to stop.[/dim]")
    while not stopping:
        failed = stack.group.failed()
        if failed is not None:
            console.print(f"[red]{failed.name} exited; see {failed.log}[/red]")
            return 1
        time.sleep(0.3)
    return 0


def _urls(settings: Settings, stack: LocalStack, workflow_id: str | None) -> list[str]:
    lines = []
    if workflow_id:
        lines.append(f"Temporal UI:  {settings.temporal_ui_workflow_url(workflow_id)}")
    else:
        lines.append(f"Temporal UI:  {settings.temporal_ui_url}")
    lines.append(f"API docs:     http://{HOST}:{stack.ports.api}/docs")
    lines.append(f"Outbox:       {settings.outbox_dir}  (Maildir: ls {settings.outbox_dir}/new)")
    return lines


def run_server(args: argparse.Namespace) -> int:
    console = Console(stderr=True, soft_wrap=True)
    home = _home(args)
    with _exclusive(home):
        stack = LocalStack(home, Ports.from_args(args))
        try:
            settings = _start(stack, console, sink=not args.no_smtp_sink)
            asyncio.run(_wait_worker(stack, settings))
            for line in _urls(settings, stack, None):
                console.print(line)
            return _serve_until_interrupted(stack, console)
        finally:
            with console.status("Stopping…"):
                stack.group.stop()


async def _wait_worker(stack: LocalStack, settings: Settings) -> None:
    client = await connect(settings)
    await stack.wait_for_worker(client, settings.temporal_task_queue)


async def _seed(settings: Settings, contacts: int, console: Console) -> tuple[int, int, str]:
    db = Database(settings.resolved_database_url)
    try:
        with Progress(
            TextColumn("Seeding demo contacts"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("seed", total=contacts)
            seeded = await seed_demo(
                db, contacts=contacts, on_progress=lambda n: progress.update(task, completed=n)
            )
        async with db.read() as conn:
            total = (
                await conn.exec_driver_sql("SELECT count(*) FROM contact WHERE tenant_id = 'demo'")
            ).scalar_one()
        key = await tool_key(db, tenant_id="demo", role=Role.ADMIN, name="tailor demo")
        return seeded.template_version_id, int(total), key
    finally:
        await db.dispose()


async def _run_campaign(
    api: str, key: str, template_version_id: int, audience: int, console: Console
) -> tuple[dict[str, Any], dict[str, Any], float]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as http:
        started_at = time.monotonic()
        response = await http.post(
            "/v1/campaigns",
            json={"name": "Seasonal picks (demo)", "template_version_id": template_version_id},
        )
        if response.status_code != 202:
            raise StartupError(f"the API refused the demo campaign: {response.text}")
        started: dict[str, Any] = response.json()
        with Progress(
            TextColumn("Sending campaign"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console,
        ) as progress:  # fmt: skip
            task = progress.add_task("send", total=audience, rate="")
            while True:
                body: dict[str, Any] = (await http.get(f"/v1/campaigns/{started['id']}")).json()
                counts = body["counts"]
                done = sum(n for status, n in counts.items() if status != "pending")
                elapsed = time.monotonic() - started_at
                progress.update(task, completed=done, rate=f"{done / max(elapsed, 1e-6):,.0f}/s")
                if body["status"] not in ("running", "paused"):
                    break
                live = body.get("progress") or {}
                if live.get("status") == "awaiting_review" and counts["pending"] == 0:
                    body["status"] = "awaiting_review"  # the rest waits for a person
                    break
                await asyncio.sleep(0.25)
        seconds = time.monotonic() - started_at
        body["example"] = await _example_send(http, started["id"])
        return started, body, seconds


async def _example_send(http: httpx.AsyncClient, campaign_id: str) -> dict[str, Any] | None:
    """One sent email's "why this email", to show what shaped it."""
    sends = (await http.get(f"/v1/campaigns/{campaign_id}/sends", params={"limit": 50})).json()
    sent = next((s for s in sends.get("items", []) if s["status"] == "sent"), None)
    if sent is None:
        return None
    why: dict[str, Any] = (await http.get(f"/v1/sends/{sent['id']}/explain")).json()
    return why


def run_demo(args: argparse.Namespace) -> int:
    console = Console(stderr=args.json, soft_wrap=True)
    home = _home(args)
    with _exclusive(home):
        stack = LocalStack(home, Ports.from_args(args))
        try:
            settings = _start(stack, console)
            version_id, audience, key = asyncio.run(_seed(settings, args.contacts, console))
            if audience > args.contacts:
                console.print(
                    f"[yellow]The demo tenant keeps {audience:,} contacts from earlier runs; "
                    f"the campaign reaches all of them (remove {home} to start fresh).[/yellow]"
                )
            asyncio.run(_wait_worker(stack, settings))
            started, final, seconds = asyncio.run(
                _run_campaign(
                    f"http://{HOST}:{stack.ports.api}", key, version_id, audience, console
                )
            )
            journeys = (
                asyncio.run(drive_journeys(f"http://{HOST}:{stack.ports.api}", key, settings,
                                           args.shoppers, console))
                if args.shoppers > 0
                else None
            )  # fmt: skip
            counts = final["counts"]
            generation = final["generation"]
            summary = {
                "campaign_id": started["id"],
                "status": final["status"],
                "sent": counts["sent"] + counts["dispatched"],
                "suppressed": counts["suppressed"],
                "failed": counts["failed"] + counts["pending"],
                "held_for_review": counts["held"],
                "seconds": round(seconds, 2),
                "outbox": str(settings.outbox_dir),
                "generator": _generator_line(settings, generation),
                "generation": generation,
                "temporal_ui_url": started["temporal_ui_url"],
                "example_send": final.get("example"),
                "api_key": key,
                "journeys": journeys,
            }
            _print_summary(console, summary, settings, stack, started["workflow_id"], key)
            if args.exit_when_done:
                return _finish(args, summary, stack, console)
            return _serve_until_interrupted(stack, console)
        finally:
            with console.status("Stopping…"):
                stack.group.stop()


def _finish(
    args: argparse.Namespace, summary: dict[str, Any], stack: LocalStack, console: Console
) -> int:
    with console.status("Stopping…"):
        stack.group.stop()
    if args.json:
        print(json.dumps(summary), flush=True)  # noqa: T201  (the machine-readable last line)
    ok = summary["failed"] == 0 and summary["status"] in ("completed", "awaiting_review")
    return 0 if ok else 1


def _print_summary(
    console: Console,
    s: dict[str, Any],
    settings: Settings,
    stack: LocalStack,
    workflow_id: str,
    key: str,
) -> None:
    console.print()
    console.print(f"[bold]Campaign {s['campaign_id']}[/bold] {s['status']} in {s['seconds']}s")
    console.print(
        f"  sent [green]{s['sent']:,}[/green]   suppressed by consent "
        f"[yellow]{s['suppressed']:,}[/yellow]   failed [red]{s['failed']:,}[/red]"
    )
    console.print(f"  generated by: {s['generator']}")
    if s["held_for_review"]:
        api = f"http://{HOST}:{stack.ports.api}"
        console.print(
            f"  [yellow]held for review {s['held_for_review']:,}[/yellow]: the LLM's words fell "
            f"below the quality bar or broke a brand rule. Approve or reject them at "
            f"{api}/docs#/reviews (GET {api}/v1/reviews?status=pending); undecided ones get the "
            f"rules-tier email after {settings.review_timeout_hours:g} h."
        )
    example = s.get("example_send")
    if example:
        api = f"http://{HOST}:{stack.ports.api}"
        why = example.get("explain") or {}
        exemplars = (why.get("retrieved_exemplars") or {}).get("exemplars") or []
        console.print(
            f"  Why this email: {api}/v1/sends/{example['id']}/explain: "
            f"{why.get('generator', {}).get('tier', '?')} tier"
            + (f", exemplars {', '.join(exemplars)}" if exemplars else "")
        )
    journeys = s.get("journeys")
    if journeys:
        started = ", ".join(f"{key} {n}" for key, n in journeys["journeys"].items())
        ui = f"http://{HOST}:{stack.ports.ui}/namespaces/{settings.temporal_namespace}/workflows"
        console.print(
            f"  Journeys:     {journeys['events']} events → {started}; "
            f"{journeys['ended_by_purchase']} cart reminders cancelled by a purchase, "
            f"{journeys['emails_sent']} journey emails sent so far, {journeys['running']} "
            f"still running (waiting days for their next email)"
        )
        console.print(f"  Journeys UI:  {ui}?query=TailorKind%3D%22journey%22")
    for line in _urls(settings, stack, workflow_id):
        console.print(f"  {line}")
    api = f"http://{HOST}:{stack.ports.api}"
    console.print(
        f"  API key:      {key}  (the demo tenant's admin key; shown once, revoked by the "
        "next `tailor demo`)"
    )
    console.print(
        f"  Try it:       curl -s {api}/v1/campaigns/{s['campaign_id']} "
        f"-H 'Authorization: Bearer {key}'"
    )
    console.print(
        f"  Find it:      temporal workflow list --address {HOST}:{stack.ports.temporal} "
        f"--query 'TailorCampaign=\"{s['campaign_id']}\"'"
    )


def _generator_line(settings: Settings, generation: dict[str, Any]) -> str:
    if not (settings.openai_enabled or settings.anthropic_enabled):
        return (
            "rule-based (no LLM configured: set TAILOR_OPENAI_API_KEY, TAILOR_LLM_BASE_URL "
            "or TAILOR_ANTHROPIC_API_KEY)"
        )
    tiers = ", ".join(f"{name} {count:,}" for name, count in generation["by_generator"].items())
    rate = generation["cache_hit_rate"]
    return (
        f"{tiers}; LLM cost ${generation['cost_usd']:.4f} "
        f"(${generation['cost_per_1k_usd']:.4f} per 1K emails), {generation['llm_calls']} calls, "
        f"cache hit rate {rate:.0%}"
        if rate is not None
        else f"{tiers}; no LLM calls"
    )
