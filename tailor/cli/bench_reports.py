"""``tailor bench reports``: a campaign report over a million sends and three million events,
timed through the API, and checked against what went in.

Seeds a fresh SQLite file in a temporary folder, or the PostgreSQL database ``--database-url``
names, with bulk loads (``tailor.store.bulk``: COPY on PostgreSQL): a tenant, one contact per
send, and one campaign of ``--sends`` emails (status sent, tiers and providers alternating),
followed by ``--events`` raw events over two weeks, stored as the application stores them:

- every email's provider report (delivered, hard or soft bounce; a few complaints and
  unsubscribes): an ``EspEvent`` row, and the email's first of that kind an ``Engagement`` row;
- opens and clicks: a ``TrackingHit`` per fetch, human or machine (Apple's privacy proxy, link
  scanners), the first human one of each kind also an ``Engagement`` row; repeats fill the rest;
- orders after a click (or, the weaker rule, an open only): a stored order ``Event``, its
  ``Conversion``, and an ``ordered`` engagement for lift.

Around it go other campaigns' rollups (four more tenants, and the tenant's own history) so the
rollup table is not the campaign's alone. It all loads in one transaction; on PostgreSQL the
tables' foreign keys are checked once at its end (``foreign_keys_after``), so give the bench a
database of its own. Then the campaign's rollups are built as a backfill
builds them (``rebuild_campaign``), the API starts as its own process on a free port, and
``--requests`` sequential reports of each variant (totals; with a daily and an hourly series)
are timed after a warm-up. Every counter the report shows must equal the number seeded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from tailor.cli.accounts import tool_key
from tailor.cli.bench_trigger import percentile
from tailor.cli.bench_webhooks import api_env, wait_healthy
from tailor.cli.processes import ProcessGroup, free_port
from tailor.cli.stack import HOST
from tailor.db import Database, migrate
from tailor.demo.seed import seed_demo
from tailor.models import (
    Contact,
    Conversion,
    Engagement,
    EspEvent,
    Event,
    Role,
    Send,
    SendRollup,
    SendStatus,
    TrackingHit,
    utcnow,
)
from tailor.store.bulk import copy_rows, foreign_keys_after, next_id, sync_id_sequence
from tailor.store.campaigns import create_campaign
from tailor.store.events import ORDER_COMPLETED
from tailor.store.rollups import COUNTERS, hour_of, rebuild_campaign

TARGET_MS = 300.0  # issue 14: a report over 1M sends and 3M events, on PostgreSQL
DAYS = 14  # events arrive over two weeks after the send
SEND_WINDOW = timedelta(hours=4)  # the campaign goes out over this long
GENERATORS = ("openai", "rules")
PROVIDERS = ("sendgrid", "mailgun")
OTHER_TENANTS = 4  # besides the bench's own, for other campaigns' rollups
VARIANTS = {"totals": "", "series=day": "?series=day", "series=hour": "?series=hour"}
BATCH = 50_000  # rows per COPY (or executemany)
WARM_UP = 3  # requests per variant before timing

# Of all emails: what the provider reports. Of delivered emails: what people (and machines) do.
HARD_BOUNCE, SOFT_BOUNCE = 0.02, 0.01
OPENED, CLICKED, COMPLAINED, UNSUBSCRIBED = 0.30, 0.05, 0.001, 0.003
MACHINE_OPENS, SCANNER_CLICKS = 0.20, 0.02
# Orders: of the emails clicked (attributed by click), of those only opened (by open).
CLICK_ORDERS, OPEN_ORDERS = 0.10, 0.01


@dataclass(frozen=True)
class Plan:
    """How many emails meet each fate; every count is exact, so the report can be checked."""

    sends: int
    hard_bounced: int
    soft_bounced: int
    opened: int  # by a person; the first ``clicked`` of them also clicked
    clicked: int
    complained: int
    unsubscribed: int
    machine_opens: int
    scanner_clicks: int
    click_orders: int  # of the clicked
    open_orders: int  # of the opened, not clicked
    repeats: int = 0  # more opens of emails already opened: raw rows, no new counts

    @property
    def delivered(self) -> int:
        return self.sends - self.hard_bounced - self.soft_bounced

    @property
    def rows(self) -> dict[str, int]:
        """Raw event rows per table."""
        reported = self.sends + self.complained + self.unsubscribed
        orders = self.click_orders + self.open_orders
        return {
            "esp_event": reported,
            "engagement": reported + self.opened + self.clicked + orders,
            "tracking_hit": self.opened + self.clicked + self.machine_opens
            + self.scanner_clicks + self.repeats,
            "conversion": orders,
        }  # fmt: skip

    @property
    def events(self) -> int:
        return sum(self.rows.values())


def plan(sends: int, events: int) -> Plan:
    """Realistic rates, scaled down until the fixed events fit in ``events``; repeat opens fill
    the rest. Every email has its provider report (two rows), so ``events`` >= 2 x ``sends``."""
    if events < 2 * sends:
        raise ValueError("--events: at least 2 x --sends (each email's provider report)")
    hard, soft = int(sends * HARD_BOUNCE), int(sends * SOFT_BOUNCE)
    delivered = sends - hard - soft
    scale = 1.0
    while True:
        opened = int(delivered * OPENED * scale)
        clicked = min(int(delivered * CLICKED * scale), opened)
        p = Plan(
            sends, hard, soft, opened, clicked,
            complained=int(delivered * COMPLAINED * scale),
            unsubscribed=int(delivered * UNSUBSCRIBED * scale),
            machine_opens=int(delivered * MACHINE_OPENS * scale),
            scanner_clicks=int(delivered * SCANNER_CLICKS * scale),
            click_orders=int(clicked * CLICK_ORDERS),
            open_orders=int((opened - clicked) * OPEN_ORDERS),
        )  # fmt: skip
        if p.events <= events:
            return replace(p, repeats=events - p.events)
        scale *= 0.9 * (events - 2 * sends) / (p.events - 2 * sends)


@dataclass
class Seeded:
    tenant_id: str
    campaign_id: str
    expected: dict[str, int]  # every rollup counter, as the campaign report must show it
    rows: dict[str, int] = field(default_factory=dict)  # rows loaded per table
    seconds: float = 0.0


COLUMNS: dict[Table, tuple[str, ...]] = {
    t.__table__: columns  # type: ignore[attr-defined]
    for t, columns in [
        (Contact, ("id", "tenant_id", "email", "timezone", "locale", "device", "engagement_score",
                   "purchase_frequency", "preferred_categories", "cart_items", "browse_items",
                   "order_count", "soft_bounces", "created_at", "updated_at")),
        (Send, ("id", "campaign_id", "contact_id", "occurrence", "status", "message_id",
                "provider", "generator", "provider_message_id", "esp_state", "control",
                "attempts", "created_at", "dispatched_at", "sent_at")),
        (Event, ("id", "tenant_id", "contact_id", "kind", "type", "properties", "message_id",
                 "occurred_at", "received_at")),
        (Engagement, ("tenant_id", "campaign_id", "send_id", "contact_id", "metric",
                      "occurred_at", "received_at")),
        (TrackingHit, ("tenant_id", "send_id", "kind", "link_index", "human", "rule", "at")),
        (EspEvent, ("tenant_id", "provider", "provider_event_id", "send_id", "kind", "reason",
                    "occurred_at", "received_at")),
        (Conversion, ("tenant_id", "event_id", "contact_id", "send_id", "campaign_id", "rule",
                      "revenue_cents", "occurred_at", "recorded_at")),
        (SendRollup, ("tenant_id", "campaign_id", "hour", "generator", "provider", "control",
                      *COUNTERS)),
    ]
}  # fmt: skip


class _Loader:
    """Rows buffered per table and copied in batches, parents before children (foreign keys).
    A batch is copied while the next is made: the database works as Python does."""

    def __init__(self, conn: AsyncConnection, on_rows: Callable[[int], None]) -> None:
        self.conn = conn
        self.on_rows = on_rows
        self.buffers: dict[Table, list[tuple[Any, ...]]] = {table: [] for table in COLUMNS}
        self.loaded: dict[str, int] = {table.name: 0 for table in COLUMNS}
        self._copying: asyncio.Task[None] | None = None

    def __getitem__(self, model: Any) -> list[tuple[Any, ...]]:
        return self.buffers[model.__table__]

    async def flush(self, *, unless_below: int = 0) -> None:
        """Start copying what is buffered (once a table has ``unless_below`` rows)."""
        await asyncio.sleep(0)  # let the copy in flight send and read
        if all(len(rows) < unless_below for rows in self.buffers.values()):
            return
        batches = [(table, rows[:]) for table, rows in self.buffers.items() if rows]
        for rows in self.buffers.values():
            rows.clear()
        await self.drain()
        self._copying = asyncio.create_task(self._copy(batches))

    async def drain(self) -> None:
        """Wait for the copy in flight."""
        if self._copying is not None:
            copying, self._copying = self._copying, None
            await copying

    async def __aenter__(self) -> _Loader:
        return self

    async def __aexit__(self, error: type[BaseException] | None, *_: object) -> None:
        """Copy the rest; after an error, stop the copy in flight (the transaction is lost)."""
        if error is None:
            await self.flush()
            await self.drain()
        elif self._copying is not None:
            self._copying.cancel()
            await asyncio.gather(self._copying, return_exceptions=True)

    async def _copy(self, batches: list[tuple[Table, list[tuple[Any, ...]]]]) -> None:
        for table, rows in batches:
            await copy_rows(self.conn, table=table, columns=COLUMNS[table], rows=rows)
            self.loaded[table.name] += len(rows)
            self.on_rows(len(rows))


async def _seed(
    db: Database, p: Plan, *, others: int, run: str, on_rows: Callable[[int], None]
) -> Seeded:
    started = time.monotonic()
    now = utcnow()
    t0 = hour_of(now) - timedelta(days=DAYS + 2)
    own = await seed_demo(db, contacts=0, tenant_id=f"rb-{run}")
    tenant, template = own.tenant_id, own.template_version_id
    other_tenants = [
        await seed_demo(db, contacts=0, tenant_id=f"rb-{run}-{k}") for k in range(OTHER_TENANTS)
    ]
    templates = {t.tenant_id: t.template_version_id for t in other_tenants}
    async with db.session() as session:
        campaign = await create_campaign(
            session=session, tenant_id=tenant, name="Report bench", template_version_id=template,
            segment={},
        )  # fmt: skip
        history = []  # other campaigns: the tenant's own, and other tenants'
        owners = [tenant, *templates]
        for k in range(others):
            owner = owners[k % len(owners)]
            made = await create_campaign(
                session=session, tenant_id=owner, name=f"Earlier campaign {k}",
                template_version_id=templates.get(owner, template), segment={},
            )  # fmt: skip
            history.append((owner, made.id, t0 - timedelta(days=k % 60)))
    cid = campaign.id
    expected = dict.fromkeys(COUNTERS, 0)
    rng = random.Random(7)
    models: list[Any] = [Contact, Send, Event, Engagement, TrackingHit, EspEvent, Conversion]
    keyed: list[Table] = [model.__table__ for model in models]
    async with (
        db.write() as conn,
        foreign_keys_after(conn, tables=keyed),
        _Loader(conn, on_rows) as load,
    ):
        contacts, sends, events = load[Contact], load[Send], load[Event]
        engagements, hits, reports = load[Engagement], load[TrackingHit], load[EspEvent]
        conversions = load[Conversion]
        first_contact = await next_id(conn, table=keyed[0])
        first_send = await next_id(conn, table=keyed[1])
        first_event = await next_id(conn, table=keyed[2])
        # Fates by rank in a shuffled order, so tiers and providers get their share of each.
        rank = list(range(p.sends))
        rng.shuffle(rank)
        hard, soft = p.hard_bounced, p.hard_bounced + p.soft_bounced
        complain_from = p.opened
        unsubscribe_from = complain_from + p.complained
        unsubscribe_to = unsubscribe_from + p.unsubscribed
        machine_from, scanner_from = p.delivered - p.machine_opens, p.delivered - p.scanner_clicks
        opens: list[tuple[int, datetime]] = []  # (send, first open) for repeats
        step, sent = SEND_WINDOW / p.sends, SendStatus.SENT.value
        for i in range(p.sends):
            contact, send = first_contact + i, first_send + i
            sent_at = t0 + step * i
            generator, provider = GENERATORS[i % 2], PROVIDERS[i // 2 % 2]
            r = rank[i]
            d = r - soft  # rank among delivered emails
            report = "bounce_hard" if r < hard else "bounce_soft" if r < soft else "delivered"
            state = report
            contacts.append((
                contact, tenant, f"rb{i}@bench.example", "UTC", "en", "mobile", 50, 0.0, (), (),
                (), 0, 0, t0 - timedelta(days=i % 180), t0,
            ))  # fmt: skip
            reported = sent_at + timedelta(seconds=1 + rng.random() * 300)
            reports.append((tenant, provider, f"{run}-{send}-{report}", send, report,
                            None if report == "delivered" else "550 5.1.1 bench", reported,
                            reported))  # fmt: skip
            engagements.append((tenant, cid, send, contact, report, reported, reported))
            if 0 <= d < p.opened:  # a person opened it
                opened = sent_at + timedelta(seconds=min(rng.expovariate(1 / 64800), 12 * 86400))
                hits.append((tenant, send, "open", None, True, None, opened))
                engagements.append((tenant, cid, send, contact, "open", opened, opened))
                opens.append((send, opened))
                state, touch, rule = "open", opened, "open"
                if d < p.clicked:
                    touch = opened + timedelta(seconds=5 + rng.random() * 1800)
                    hits.append((tenant, send, "click", 0, True, None, touch))
                    engagements.append((tenant, cid, send, contact, "click", touch, touch))
                    state, rule = "click", "click"
                if d < p.click_orders or p.clicked <= d < p.clicked + p.open_orders:
                    hours = 48 if rule == "click" else 20  # inside the tenant's windows
                    at = touch + timedelta(seconds=60 + rng.random() * hours * 3600)
                    cents = rng.randrange(1500, 25_000)
                    order = first_event + expected["ordered"]
                    events.append((order, tenant, contact, "track", ORDER_COMPLETED,
                                   {"revenue": cents / 100, "currency": "USD"},
                                   f"{run}-order-{order}", at, at))  # fmt: skip
                    conversions.append((tenant, order, contact, send, cid, rule, cents, at, at))
                    engagements.append((tenant, cid, send, contact, "ordered", at, at))
                    suffix = "_open" if rule == "open" else ""
                    expected["conversions" + suffix] += 1
                    expected[f"revenue{suffix}_cents"] += cents
                    expected["ordered"] += 1
            elif complain_from <= d < unsubscribe_to:
                kind = "complaint" if d < unsubscribe_from else "unsubscribe"
                at = reported + timedelta(seconds=rng.random() * 86400)
                reports.append((tenant, provider, f"{run}-{send}-{kind}", send, kind, None, at,
                                at))  # fmt: skip
                engagements.append((tenant, cid, send, contact, kind, at, at))
                state = kind
            if d >= machine_from:  # Apple Mail Privacy Protection fetches every image
                at = reported + timedelta(seconds=rng.random() * 3600)
                hits.append((tenant, send, "open", None, False, "apple-mpp-proxy-ip", at))
            if d >= scanner_from:  # a link scanner at the receiving server
                at = reported + timedelta(seconds=rng.random() * 60)
                hits.append((tenant, send, "click", 0, False, "scanner-click-on-delivery", at))
            sends.append((
                send, cid, contact, "", sent, f"<{cid}.{contact}@bench.tailor>",
                provider, generator, f"{run}-{send}", state, False, 1, sent_at, sent_at, sent_at,
            ))  # fmt: skip
            if i % 1000 == 999:
                await load.flush(unless_below=BATCH)
        for k in range(p.repeats):  # people opening again: rows, no new counts
            if opens:
                send, opened = opens[k % len(opens)]
                at = opened + timedelta(seconds=60 + rng.random() * 3 * 86400)
                hits.append((tenant, send, "open", None, True, None, at))
            else:  # nobody opened (a tiny run): machines fetch the pixel instead
                at = t0 + timedelta(seconds=rng.random() * 86400)
                hits.append((tenant, first_send + k % p.sends, "open", None, False,
                             "apple-mpp-proxy-ip", at))  # fmt: skip
            if k % 1000 == 999:
                await load.flush(unless_below=BATCH)
        for owner, campaign_id, start in history:
            _history(load, owner, campaign_id, start, rng)
            await load.flush(unless_below=BATCH)
    async with db.write() as conn:
        for table in keyed[:3]:
            await sync_id_sequence(conn, table=table)
    expected.update(
        sent=p.sends, delivered=p.delivered, bounced=p.hard_bounced, soft_bounced=p.soft_bounced,
        complained=p.complained, unsubscribed=p.unsubscribed, opened=p.opened,
        clicked=p.clicked,
    )  # fmt: skip
    return Seeded(tenant, cid, expected, load.loaded, time.monotonic() - started)


def _history(
    load: _Loader, tenant: str, campaign: str, start: datetime, rng: random.Random
) -> None:
    """Another campaign's rollup rows: every hour of two weeks, each tier and provider."""
    for h in range(DAYS * 24):
        for generator in GENERATORS:
            for provider in PROVIDERS:
                sent = 2500 if h < 4 else 0
                opened = rng.randrange(0, 200) // (1 + h // 24)
                counts = dict.fromkeys(COUNTERS, 0)
                counts.update(sent=sent, delivered=sent - sent // 50, opened=opened,
                              clicked=opened // 6, ordered=opened // 60)  # fmt: skip
                load[SendRollup].append((tenant, campaign, start + timedelta(hours=h),
                                         generator, provider, False,
                                         *(counts[c] for c in COUNTERS)))  # fmt: skip


async def _seed_run(url: str, p: Plan, others: int, run: str, console: Console) -> Seeded:
    db = Database(url)  # one per asyncio.run: a pool belongs to its event loop
    total = p.sends * 2 + p.events + p.click_orders + p.open_orders + others * DAYS * 24 * 4
    try:
        with Progress(
            TextColumn("Seeding rows"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("seed", total=total)
            return await _seed(
                db, p, others=others, run=run, on_rows=lambda n: progress.advance(task, n)
            )
    finally:
        await db.dispose()


async def _rebuild(url: str, campaign_id: str, tenant_id: str) -> tuple[int, float, str]:
    """Rows written, seconds, and a key (analyst) for the report requests."""
    db = Database(url)
    try:
        started = time.monotonic()
        async with db.write() as conn:
            rows = await rebuild_campaign(conn, campaign_id=campaign_id)
        seconds = time.monotonic() - started
        key = await tool_key(db, tenant_id=tenant_id, role=Role.ANALYST, name="report bench")
        return rows, seconds, key
    finally:
        await db.dispose()


def _time_reports(
    url: str, key: str, campaign_id: str, requests: int, console: Console
) -> tuple[dict[str, dict[str, float]], dict[str, Any], list[str]]:
    """Per variant: p50, p95 and max in ms; the last answer of each; errors."""
    timings: dict[str, dict[str, float]] = {}
    answers: dict[str, Any] = {}
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {key}"}
    with (
        httpx.Client(base_url=url, headers=headers, timeout=60) as http,
        Progress(
            TextColumn("Timing reports"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        ) as progress,
    ):  # fmt: skip
        task = progress.add_task("time", total=len(VARIANTS) * (requests + WARM_UP))
        for name, query in VARIANTS.items():
            took: list[float] = []
            for n in range(WARM_UP + requests):
                started = time.perf_counter()
                response = http.get(f"/v1/reports/campaigns/{campaign_id}{query}")
                ms = (time.perf_counter() - started) * 1000
                progress.advance(task)
                if response.status_code != 200:
                    errors.append(f"{name}: {response.status_code} {response.text[:200]}")
                    continue
                answers[name] = response.json()
                if n >= WARM_UP:
                    took.append(ms)
            if took:
                timings[name] = {"p50_ms": round(percentile(took, 50), 1),
                                 "p95_ms": round(percentile(took, 95), 1),
                                 "max_ms": round(max(took), 1)}  # fmt: skip
    return timings, answers, errors


def check(seeded: Seeded, answers: dict[str, Any]) -> list[str]:
    """What differs between the seed and the reports (count in = count out); empty if nothing."""
    wrong = []
    want: dict[str, float] = {c: v for c, v in seeded.expected.items() if not c.endswith("_cents")}
    want.update(revenue=seeded.expected["revenue_cents"] / 100,
                revenue_open=seeded.expected["revenue_open_cents"] / 100)  # fmt: skip
    ints = [c for c in want if not c.startswith("revenue")]
    for name, answer in answers.items():
        totals = answer["totals"]
        wrong += [f"{name}: totals.{c} {totals[c]} != {v} seeded" for c, v in want.items()
                  if totals[c] != v]  # fmt: skip
        for part in ("by_tier", "by_provider"):
            summed = {c: sum(row[c] for row in answer[part]) for c in ints}
            wrong += [f"{name}: {part} sums {c} to {summed[c]} != {want[c]}" for c in ints
                      if summed[c] != want[c]]  # fmt: skip
        if "series" in answer:
            summed = {c: sum(row[c] for row in answer["series"]) for c in ints}
            wrong += [f"{name}: series sums {c} to {summed[c]} != {want[c]}" for c in ints
                      if summed[c] != want[c]]  # fmt: skip
    if len(answers) != len(VARIANTS):
        wrong.append(f"answers for {sorted(answers)} only")
    return wrong


def run_reports_bench(args: argparse.Namespace) -> int:
    console = Console(stderr=args.json, soft_wrap=True)
    try:
        p = plan(args.sends, args.events)
    except ValueError as exc:
        console.print(f"tailor: {exc}")
        return 2
    home = Path(tempfile.mkdtemp(prefix="tailor-bench-reports-"))
    database_url = args.database_url or f"sqlite+aiosqlite:///{home / 'tailor.db'}"
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    port = free_port()
    url = f"http://{HOST}:{port}"
    env = api_env(home, database_url, port)
    group = ProcessGroup(home)
    run = uuid.uuid4().hex[:8]
    try:
        asyncio.run(migrate(database_url))
        seeded = asyncio.run(_seed_run(database_url, p, args.other_campaigns, run, console))
        console.print(
            f"Seeded {sum(seeded.rows.values()):,} rows in {seeded.seconds:.1f} s: "
            + ", ".join(f"{name} {n:,}" for name, n in seeded.rows.items())
        )
        with console.status(f"Building the campaign's rollups from {p.events:,} events…"):
            rollup_rows, rebuild_s, key = asyncio.run(
                _rebuild(database_url, seeded.campaign_id, seeded.tenant_id)
            )
        console.print(f"Rebuilt the campaign's rollups: {rollup_rows:,} rows in {rebuild_s:.1f} s")
        group.start("api", [sys.executable, "-m", "tailor.cli.main", "api"], env)
        wait_healthy(url, group)
        timings, answers, errors = _time_reports(
            url, key, seeded.campaign_id, args.requests, console
        )
    finally:
        group.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    mismatches = check(seeded, answers)
    worst = max((t["p95_ms"] for t in timings.values()), default=None)
    report = {
        "backend": backend,
        "sends": p.sends,
        "events": p.events,
        "seed_seconds": round(seeded.seconds, 1),
        "rows_seeded": seeded.rows,
        "rebuild_seconds": round(rebuild_s, 2),
        "rollup_rows": rollup_rows,
        "other_campaigns": args.other_campaigns,
        "requests": args.requests,
        "timings": timings,
        "target_p95_ms": TARGET_MS,
        "within_target": worst is not None and worst < TARGET_MS,
        "expected": seeded.expected,
        "api_errors": errors,
        "mismatches": mismatches,
    }
    for name, t in timings.items():
        console.print(
            f"GET report {name:<12} p50 {t['p50_ms']:>7.1f} ms   p95 {t['p95_ms']:>7.1f} ms   "
            f"max {t['max_ms']:>7.1f} ms"
        )
    verdict = "within" if report["within_target"] else "[bold red]over[/bold red]"
    console.print(
        f"{backend}: {p.sends:,} sends, {p.events:,} events; worst p95 {worst} ms, {verdict} the "
        f"{TARGET_MS:.0f} ms target; counts "
        + ("match the seed" if not mismatches else f"[bold red]differ[/bold red]: {mismatches[:5]}")
    )
    for error in errors[:5]:
        console.print(f"[red]{error}[/red]")
    if args.json:
        print(json.dumps(report), flush=True)  # noqa: T201  (the machine-readable last line)
    ok = not mismatches and not errors
    return 0 if ok and (backend != "postgresql" or report["within_target"]) else 1
