"""``tailor bench tracking``: the open pixel and the click redirect at a fixed request rate.

Starts the API as its own process (like ``tailor api``) on a free port against a fresh SQLite
database in a temporary folder, or the PostgreSQL database ``--database-url`` names. Seeds the
demo tenant and a campaign with a send per consenting contact, claimed with three links each and
recorded sent an hour ago (so a click is a reader's, not a scanner's on delivery), and signs real
pixel and redirect tokens for them with a tracking secret made for the run.

Requests then go out open-loop at ``--rate`` for ``--seconds`` (after a second of warm-up, not
measured): each is scheduled on a clock, and its latency runs from the scheduled time, not from
when a connection was free, so a stall of the server shows in every request it held up instead
of hiding behind a client that waited (no coordinated omission). ``--click-share`` of them are
redirects, the rest pixel fetches, under recorded user agents (mostly people; an Apple Mail
Privacy Protection prefetch and a Gmail proxy among them). Reports the achieved rate, p50, p95,
p99 and max per route, errors, and, once the API's recorder has drained, the hits stored against
the requests sent.

The client is a few lines of HTTP/1.1 over keep-alive sockets rather than httpx: on a two-core
machine a general-purpose client's own CPU would be much of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from tailor.cli.bench_trigger import CpuMeter, percentile
from tailor.cli.bench_webhooks import api_env, wait_healthy
from tailor.cli.processes import ProcessGroup, free_port
from tailor.cli.stack import HOST
from tailor.db import Database, migrate
from tailor.demo.seed import seed_demo
from tailor.models import utcnow
from tailor.store.campaigns import create_campaign
from tailor.store.consent import consenting_contacts
from tailor.store.sends import Accepted, claim_for_dispatch, ensure_send_rows, mark_sent, sends_for
from tailor.store.tracking import hit_counts, tracked_send
from tailor.tracking.tokens import sign_click, sign_open

LINKS = ("https://shop.example/p/{send}", "https://shop.example/cart", "https://shop.example/")
WARMUP_S = 1.0
REQUEST_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 120.0
DRAIN_STILL_S = 5.0  # no new hit stored for this long: the recorder is done (or stuck)
EXPECTED = {"open": 200, "click": 302}
# Recorded user agents, taken in turn: mail clients and image proxies fetch the pixel, browsers
# follow the links. "Mozilla/5.0" alone is Apple's MPP prefetch (a machine open).
OPEN_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "Mozilla/5.0",
)
CLICK_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36",
)


@dataclass(frozen=True)
class TrackedEmail:
    """The signed tokens of one email: its pixel's and one per link."""

    open_token: str
    click_tokens: tuple[str, ...]


@dataclass(frozen=True)
class Planned:
    route: str  # open or click
    path: str
    agent: str


async def _seed(url: str, contacts: int, secret: str) -> tuple[str, list[TrackedEmail]]:
    db = Database(url)  # one per asyncio.run: a pool belongs to its event loop
    try:
        return await _seed_sends(db, contacts, secret)
    finally:
        await db.dispose()


async def _seed_sends(db: Database, contacts: int, secret: str) -> tuple[str, list[TrackedEmail]]:
    seeded = await seed_demo(db, contacts=contacts)
    tenant_id = seeded.tenant_id
    async with db.session() as session:
        campaign = await create_campaign(
            session=session, tenant_id=tenant_id, name="Tracking bench",
            template_version_id=seeded.template_version_id, segment={},
        )  # fmt: skip
    async with db.read() as conn:
        people = await consenting_contacts(conn, tenant_id=tenant_id, limit=contacts)
    contact_ids = [person.id for person in people]
    async with db.write() as conn:
        await ensure_send_rows(
            conn, campaign_id=campaign.id, contact_ids=contact_ids, domain="bench.tailor"
        )
    async with db.read() as conn:
        sends = await sends_for(conn, campaign_id=campaign.id, contact_ids=contact_ids)
    links = {s.id: [link.format(send=s.id) for link in LINKS] for s in sends}
    async with db.write() as conn:
        claimed = await claim_for_dispatch(
            conn, send_ids=list(links), provider="bench", links=links
        )
        await mark_sent(
            conn,
            accepted=[Accepted(send_id, f"bench-{send_id}", "rules", {}) for send_id in claimed],
            at=utcnow() - timedelta(hours=1),
        )
    async with db.read() as conn:
        found = await tracked_send(conn, send_id=min(claimed))
    assert found is not None
    version = found.key_version
    return campaign.id, [
        TrackedEmail(
            sign_open(secret, tenant_id, version, send_id),
            tuple(sign_click(secret, tenant_id, version, send_id, i) for i in range(len(LINKS))),
        )
        for send_id in sorted(claimed)
    ]


def _plan(emails: list[TrackedEmail], total: int, click_share: float) -> list[Planned]:
    """``total`` requests over random emails (a fixed seed: every run asks the same)."""
    rng = random.Random(13)
    plan = []
    for seq in range(total):
        email = emails[rng.randrange(len(emails))]
        if rng.random() < click_share:
            token = email.click_tokens[rng.randrange(len(email.click_tokens))]
            plan.append(Planned("click", f"/t/c/{token}", CLICK_AGENTS[seq % len(CLICK_AGENTS)]))
        else:
            path = f"/t/o/{email.open_token}"
            plan.append(Planned("open", path, OPEN_AGENTS[seq % len(OPEN_AGENTS)]))
    return plan


class KeepAliveClient:
    """GET requests over HTTP/1.1 keep-alive connections to one server, a connection per
    request in flight (opened when none is idle), at most ``limit`` in flight."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self._host, self._port = host, port
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, path: str, agent: str) -> int:
        """The response's status (its body read and dropped)."""
        request = f"GET {path} HTTP/1.1\r\nHost: {self._host}\r\nUser-Agent: {agent}\r\n\r\n"
        async with self._slots:
            while self._idle:
                reader, writer = self._idle.pop()
                if reader.at_eof():  # the server closed it while it was idle
                    writer.close()
                    continue
                try:
                    return await self._exchange(reader, writer, request.encode())
                except (ConnectionError, asyncio.IncompleteReadError):
                    continue  # closed as we reused it: as a browser does, try a fresh one
            reader, writer = await asyncio.open_connection(self._host, self._port)
            return await self._exchange(reader, writer, request.encode())

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> int:
        try:
            writer.write(request)
            status, length, keep = _head(await reader.readuntil(b"\r\n\r\n"))
            if length:
                await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if keep:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return status

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()


def _head(raw: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, keep the connection) of a response head."""
    lines = raw.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
        elif name == b"transfer-encoding":
            raise ValueError("chunked response")  # the routes never stream
    return status, length, keep


async def _load(
    host: str, port: int, plan: list[Planned], *, rate: int, warmup: int, connections: int
) -> dict[str, Any]:
    client = KeepAliveClient(host, port, connections)
    loop = asyncio.get_running_loop()
    latencies: dict[str, list[float]] = {"open": [], "click": []}
    errors = {"open": 0, "click": 0}
    first_error: str | None = None
    start = loop.time() + 0.05
    finished = start

    async def one(seq: int, planned: Planned, due: float) -> None:
        nonlocal finished, first_error
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                status = await client.get(planned.path, planned.agent)
            failure = None if status == EXPECTED[planned.route] else f"status {status}"
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
            failure = type(error).__name__
        done = loop.time()
        finished = max(finished, done)
        if seq >= warmup:  # from when it was due, not from when it could go
            latencies[planned.route].append((done - due) * 1000)
        if failure is not None:
            errors[planned.route] += 1
            first_error = first_error or f"{planned.route}: {failure}"

    running: set[asyncio.Task[None]] = set()
    for seq, planned in enumerate(plan):
        due = start + seq / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(seq, planned, due))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    await client.close()
    measured = len(plan) - warmup
    elapsed = finished - (start + warmup / rate)
    return {
        "requests": measured,
        "elapsed_s": round(elapsed, 2),
        "rate_achieved": round(measured / elapsed, 1) if elapsed > 0 else None,
        "routes": {route: _summary(values, errors[route]) for route, values in latencies.items()},
        "errors": sum(errors.values()),
        "first_error": first_error,
    }


def _summary(values: list[float], errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {"requests": len(values), "errors": errors}
    for name, q in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99)):
        out[name] = round(percentile(values, q), 2) if values else None
    out["max_ms"] = round(max(values), 2) if values else None
    return out


async def _drained(url: str, campaign_id: str, requested: int) -> tuple[dict[str, int], float]:
    """The campaign's hits by kind and verdict once the API has stored every one requested, or
    stored no new one for ``DRAIN_STILL_S``; and how long that took."""
    db = Database(url)
    started = time.monotonic()
    last, still_since = -1, started
    try:
        while True:
            async with db.read() as conn:
                counts = await hit_counts(conn, campaign_id=campaign_id)
            stored = sum(counts.values())
            now = time.monotonic()
            if stored != last:
                last, still_since = stored, now
            if (
                stored >= requested
                or now - still_since >= DRAIN_STILL_S
                or now - started >= DRAIN_TIMEOUT_S
            ):
                break
            await asyncio.sleep(0.2)
    finally:
        await db.dispose()
    by_verdict = {
        f"{kind}_{'human' if human else 'machine'}": n
        for (kind, human), n in sorted(counts.items())
    }
    return by_verdict, round(time.monotonic() - started, 2)


def run_tracking_bench(args: argparse.Namespace) -> int:
    console = Console(stderr=args.json, soft_wrap=True)
    home = Path(tempfile.mkdtemp(prefix="tailor-bench-tracking-"))
    database_url = args.database_url or f"sqlite+aiosqlite:///{home / 'tailor.db'}"
    secret = secrets.token_urlsafe(32)
    port = free_port()
    url = f"http://{HOST}:{port}"
    env = api_env(home, database_url, port, TAILOR_TRACKING_SECRET=secret, TAILOR_TRACKING_URL=url)
    group = ProcessGroup(home)
    warmup = int(args.rate * WARMUP_S)
    try:
        asyncio.run(migrate(database_url))
        with console.status(f"Seeding {args.contacts:,} contacts and their sent emails…"):
            campaign_id, emails = asyncio.run(_seed(database_url, args.contacts, secret))
        plan = _plan(emails, warmup + args.rate * args.seconds, args.click_share)
        api = group.start("api", [sys.executable, "-m", "tailor.cli.main", "api"], env)
        wait_healthy(url, group)
        # ``tailor api`` records in a child process (api/recorder.py): measured apart.
        pids = {"api": api.proc.pid}
        for child in psutil.Process(api.proc.pid).children():
            pids["recorder"] = child.pid
        cpu = CpuMeter(pids)
        with console.status(
            f"{args.rate} requests/s for {args.seconds}s (+{WARMUP_S:g}s warm-up), "
            f"{args.click_share:.0%} redirects…"
        ):
            cpu.start()
            report = asyncio.run(
                _load(
                    HOST, port, plan, rate=args.rate, warmup=warmup, connections=args.connections
                )  # fmt: skip
            )
            cores = cpu.cores()
            report["api_cpu_cores"] = cores["api"]
            report["recorder_cpu_cores"] = cores.get("recorder")
        with console.status("Waiting for the API to record every hit…"):
            hits, drain_s = asyncio.run(_drained(database_url, campaign_id, len(plan)))
    finally:
        group.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    recorded = sum(hits.values())
    report.update(
        backend="sqlite" if database_url.startswith("sqlite") else "postgresql",
        rate=args.rate,
        seconds=args.seconds,
        click_share=args.click_share,
        sends=len(emails),
        hits_requested=len(plan),
        hits_recorded=recorded,
        hits=hits,
        drain_s=drain_s,
    )
    pixel, redirect = report["routes"]["open"], report["routes"]["click"]
    console.print(
        f"{report['rate_achieved']:,} requests/s achieved ({report['requests']:,} in "
        f"{report['elapsed_s']} s, {report['backend']}, API {report['api_cpu_cores']} cores, "
        f"its recorder {report['recorder_cpu_cores']})\n"
        f"  pixel     p50 {pixel['p50_ms']} ms, p95 {pixel['p95_ms']}, p99 {pixel['p99_ms']}, "
        f"max {pixel['max_ms']}; {pixel['errors']} errors\n"
        f"  redirect  p50 {redirect['p50_ms']} ms, p95 {redirect['p95_ms']}, "
        f"p99 {redirect['p99_ms']}, max {redirect['max_ms']}; {redirect['errors']} errors\n"
        f"  hits recorded {recorded:,} of {len(plan):,} requested (drained in {drain_s} s)"
        + (f"; first error: {report['first_error']}" if report["first_error"] else "")
    )
    if args.json:
        print(json.dumps(report), flush=True)  # noqa: T201  (the machine-readable last line)
    return 0 if report["errors"] == 0 and recorded == len(plan) else 1
