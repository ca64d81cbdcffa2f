"""``tailor bench webhooks``: signed SendGrid event batches into the API, and nothing lost.

Starts the API as its own process (like ``tailor api``) on a free port against a fresh SQLite
database in a temporary folder, or the PostgreSQL database ``--database-url`` names, seeds the
demo tenant and a campaign with a send per contact, then posts SendGrid Event Webhook batches
(``--batch`` events each, a realistic mix of delivered, open, click, deferred and a few bounces
and complaints, every one with a new event id) signed with a key made for the run, from
``--concurrency`` clients for ``--seconds``. Reports events accepted per second, request latency,
and whether every event the API accepted is a stored row (count in = rows stored).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console
from sqlalchemy import func, select
from sqlmodel import col

from tailor.cli.bench_trigger import percentile
from tailor.cli.processes import ProcessGroup, StartupError, free_port
from tailor.cli.stack import HOST
from tailor.db import Database, migrate
from tailor.demo.seed import seed_demo
from tailor.models import Contact, EspEvent, Send
from tailor.store.campaigns import create_campaign
from tailor.store.sends import ensure_send_rows

# Weights of a realistic feed: mostly deliveries and engagement, a few failures.
MIX = [("delivered", 50), ("open", 25), ("click", 10), ("deferred", 8), ("bounce", 4),
       ("blocked", 2), ("spamreport", 1)]  # fmt: skip
KINDS = [name for name, weight in MIX for _ in range(weight)]


def _event(run: str, seq: int, send: tuple[int, str]) -> dict[str, Any]:
    name = KINDS[seq % len(KINDS)]
    item: dict[str, Any] = {
        "email": f"bench{send[0]}@example.com",
        "timestamp": int(time.time()),
        "event": "bounce" if name == "blocked" else name,
        "sg_event_id": f"{run}-{seq}",
        "tailor_send_id": str(send[0]),
        "smtp-id": send[1],
    }
    if name in ("bounce", "blocked"):
        item["type"] = "blocked" if name == "blocked" else "bounce"
        item["reason"] = "550 5.1.1 bench" if name == "bounce" else "421 bench"
    if name == "click":
        item["url"] = "https://shop.example/p/1"
    return item


async def _seed(url: str, contacts: int) -> list[tuple[int, str]]:
    db = Database(url)  # one per asyncio.run: a pool belongs to its event loop
    try:
        return await _seed_sends(db, contacts)
    finally:
        await db.dispose()


async def _seed_sends(db: Database, contacts: int) -> list[tuple[int, str]]:
    seeded = await seed_demo(db, contacts=contacts)
    async with db.session() as session:
        campaign = await create_campaign(
            session=session,
            tenant_id=seeded.tenant_id,
            name="Webhook bench",
            template_version_id=seeded.template_version_id,
            segment={},
        )
    async with db.write() as conn:
        found = await conn.execute(
            select(Contact.id).where(col(Contact.tenant_id) == seeded.tenant_id)  # type: ignore[call-overload]
        )
        contact_ids = list(found.scalars())
        await ensure_send_rows(
            conn, campaign_id=campaign.id, contact_ids=contact_ids, domain="bench.tailor"
        )
        rows = await conn.execute(
            select(Send.id, Send.message_id).where(col(Send.campaign_id) == campaign.id)  # type: ignore[call-overload]
        )
        return [(int(i), str(m)) for i, m in rows.all()]


async def _load(
    url: str,
    key: ec.EllipticCurvePrivateKey,
    sends: list[tuple[int, str]],
    *,
    run: str,
    batch: int,
    seconds: float,
    concurrency: int,
) -> dict[str, Any]:
    latencies: list[float] = []
    accepted = sent = errors = 0
    first_error: str | None = None
    counter = iter(range(10**12))
    deadline = time.monotonic() + seconds

    async def client_loop(http: httpx.AsyncClient) -> None:
        nonlocal accepted, sent, errors, first_error
        while time.monotonic() < deadline:
            items = [_event(run, seq, sends[seq % len(sends)]) for seq in
                     (next(counter) for _ in range(batch))]  # fmt: skip
            body = json.dumps(items).encode()
            stamp = str(int(time.time()))
            signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
            headers = {
                "Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            }
            started = time.perf_counter()
            response = await http.post(f"{url}/v1/webhooks/sendgrid", content=body, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            sent += len(items)
            if response.status_code == 200:
                accepted += int(response.json()["accepted"])
            else:
                errors += 1
                first_error = first_error or f"{response.status_code} {response.text[:200]}"

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(client_loop(http) for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    return {
        "requests": len(latencies),
        "events_sent": sent,
        "events_accepted": accepted,
        "elapsed_s": round(elapsed, 2),
        "events_per_s": round(accepted / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
        "api_errors": errors,
        "first_api_error": first_error,
    }


async def _stored(url: str, run: str) -> int:
    db = Database(url)
    try:
        async with db.read() as conn:
            found = await conn.execute(
                select(func.count())
                .select_from(EspEvent)
                .where(col(EspEvent.provider_event_id).like(f"{run}-%"))
            )
            return int(found.scalar_one())
    finally:
        await db.dispose()


def wait_healthy(url: str, group: ProcessGroup) -> None:
    deadline = time.monotonic() + 60
    service = group.services[-1]
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise StartupError(f"API exited with code {service.proc.returncode}; see {service.log}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise StartupError(f"API not healthy after 60s; see {service.log}")


def api_env(home: Path, database_url: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of a bench's own API process: its state folder, database and port, and
    whatever settings the bench adds (``TAILOR_...`` names)."""
    return {
        **os.environ,
        "TAILOR_HOME": str(home),
        "TAILOR_DATABASE_URL": database_url,
        "TAILOR_API_HOST": HOST,
        "TAILOR_API_PORT": str(port),
        **extra,
        "PYTHONUNBUFFERED": "1",
    }


def run_webhooks_bench(args: argparse.Namespace) -> int:
    console = Console(stderr=args.json, soft_wrap=True)
    home = Path(tempfile.mkdtemp(prefix="tailor-bench-webhooks-"))
    database_url = args.database_url or f"sqlite+aiosqlite:///{home / 'tailor.db'}"
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    port = free_port()
    url = f"http://{HOST}:{port}"
    env = api_env(
        home, database_url, port,
        TAILOR_SENDGRID_WEBHOOK_PUBLIC_KEY=base64.b64encode(public).decode(),
    )  # fmt: skip
    group = ProcessGroup(home)
    run = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(migrate(database_url))
        with console.status(f"Seeding {args.contacts:,} contacts and their sends…"):
            sends = asyncio.run(_seed(database_url, args.contacts))
        group.start("api", [sys.executable, "-m", "tailor.cli.main", "api"], env)
        wait_healthy(url, group)
        with console.status(
            f"Posting {args.batch}-event batches from {args.concurrency} clients for "
            f"{args.seconds}s…"
        ):
            report = asyncio.run(
                _load(
                    url,
                    key,
                    sends,
                    run=run,
                    batch=args.batch,
                    seconds=args.seconds,
                    concurrency=args.concurrency,
                )  # fmt: skip
            )
        report["rows_stored"] = asyncio.run(_stored(database_url, run))
    finally:
        group.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    report.update(
        backend="sqlite" if database_url.startswith("sqlite") else "postgresql",
        batch=args.batch,
        concurrency=args.concurrency,
        sends=len(sends),
        lost=report["events_accepted"] - report["rows_stored"],
    )
    console.print(
        f"{report['events_per_s']:,} events/s accepted ({report['events_accepted']:,} in "
        f"{report['elapsed_s']} s, {report['requests']} requests of {args.batch}); "
        f"rows stored {report['rows_stored']:,}; request p50 {report['p50_ms']} ms, "
        f"p99 {report['p99_ms']} ms; {report['api_errors']} errors"
    )
    if args.json:
        print(json.dumps(report), flush=True)  # noqa: T201  (the machine-readable last line)
    ok = report["api_errors"] == 0 and report["rows_stored"] == report["events_accepted"]
    return 0 if ok and report["events_accepted"] == report["events_sent"] else 1
