"""A new shop from nothing, through the CLI and the API alone: the tenant and its first admin
key from `tailor tenant create`, then settings, a marketer key, a catalog of 1,000 products
from CSV, contacts, a template and a campaign that reaches the inbox from the shop's sender."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tailor.db import Database
from tailor.devtools.smtp_sink import read_outbox
from tests.conftest import Sink, settings_for, task_queue
from worker import build_worker

ADDRESS = "7 Harbour Row, Portsmouth PO1 3AX, United Kingdom"


def _cli(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TAILOR_DATABASE_URL": db.url}
    return subprocess.run(
        [sys.executable, "-m", "tailor.cli.main", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def _catalog_csv(count: int) -> str:
    rows = ["sku,name,category,price,url"]
    categories = ["sails", "ropes", "jackets", "boots"]
    for n in range(count):
        category = categories[n % len(categories)]
        rows.append(
            f"HB-{n:04d},Harbour {category} {n},{category},{10 + n % 90}.99,"
            f"https://harbour.example/p/{n}"
        )
    return "\n".join(rows) + "\n"


@pytest.fixture
async def api(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink
) -> AsyncIterator[tuple[httpx.AsyncClient, Sink, dict[str, str]]]:
    created = _cli(
        db, "tenant", "create", "harbour", "--name", "Harbour Chandlery",
        "--postal-address", ADDRESS, "--sender", "Harbour Chandlery <news@harbour.example>",
        "--website", "https://harbour.example", "--timezone", "Europe/London", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    first_key = json.loads(created.stdout)
    again = _cli(db, "tenant", "create", "harbour", "--postal-address", ADDRESS,
                 "--sender", "H <h@harbour.example>")  # fmt: skip
    assert again.returncode == 1 and "exists" in again.stderr and again.stderr.count("\n") == 1

    settings = settings_for(db, sink, temporal_task_queue=task_queue())
    app = create_app(settings, temporal_client=time_skipping_env.client)
    worker = build_worker(time_skipping_env.client, db, settings, settings.temporal_task_queue)
    async with worker, app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as http:
            yield http, sink, first_key


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def test_a_new_shop_onboards_and_sends_a_campaign_with_the_cli_and_api_alone(
    api: tuple[httpx.AsyncClient, Sink, dict[str, str]],
) -> None:
    http, sink, first_key = api
    admin = {"Authorization": f"Bearer {first_key['secret']}"}
    settings = await _ok(
        await http.patch(
            "/v1/tenant/settings",
            json={"daily_email_limit": 2, "brand_policy": {"banned_phrases": ["cheap"]}},
            headers=admin,
        )
    )
    assert settings["timezone"] == "Europe/London" and settings["daily_email_limit"] == 2
    issued = await _ok(
        await http.post("/v1/keys", json={"name": "Marketing", "role": "marketer"}, headers=admin),
        201,
    )
    marketer = {"Authorization": f"Bearer {issued['secret']}"}

    catalog = await _ok(
        await http.post(
            "/v1/products/csv",
            content=_catalog_csv(1000),
            headers={**admin, "Content-Type": "text/csv"},
        )
    )
    assert catalog["created"] == 1000
    # A marketer runs the marketing but not the catalog.
    refused = await http.post(
        "/v1/products/csv",
        content=_catalog_csv(1),
        headers={**marketer, "Content-Type": "text/csv"},
    )
    assert refused.status_code == 403

    contacts = [
        {
            "email": f"sailor{n}@example.org",
            "first_name": f"Sailor{n}",
            "preferred_categories": ["sails"],
            "consent": {
                "status": "granted",
                "source": "shop-signup",
                "method": "double-opt-in",
                "wording_version": "v1",
            },
        }  # fmt: skip
        for n in range(12)
    ] + [{"email": "no-consent@example.org", "first_name": "Quiet"}]
    upserted = await _ok(
        await http.post("/v1/contacts", json={"contacts": contacts}, headers=marketer)
    )
    assert upserted["created"] == 13

    template = await _ok(
        await http.post(
            "/v1/templates",
            json={
                "name": "Welcome aboard",
                "subject": "New at the harbour, {{ first_name }}",
                "body": "Hello {{ first_name }}, fresh {{ top_category }} are in.",
                "cta_text": "See what's new",
                "cta_url": "https://harbour.example/new",
            },
            headers=marketer,
        ),
        201,
    )
    version_id = template["versions"][0]["id"]
    started = await _ok(
        await http.post(
            "/v1/campaigns",
            json={"name": "Spring at the harbour", "template_version_id": version_id},
            headers=marketer,
        ),
        202,
    )
    async with asyncio.timeout(60):
        while True:
            body = await _ok(await http.get(f"/v1/campaigns/{started['id']}", headers=marketer))
            if body["status"] not in ("running", "paused"):
                break
            await asyncio.sleep(0.1)
    assert body["status"] == "completed", body
    assert (body["counts"]["sent"], body["counts"]["suppressed"]) == (12, 1)

    emails = read_outbox(sink.maildir, started["id"])
    assert sorted(e.to for e in emails) == sorted(str(c["email"]) for c in contacts[:12])
    message = emails[0].full()
    assert message["From"] == "Harbour Chandlery <news@harbour.example>"
    text = message.get_body(("plain",))
    assert text is not None and ADDRESS in text.get_content()
    # The trail names who did each step: the CLI's key, then the marketer's.
    trail = await _ok(await http.get("/v1/audit", params={"limit": 50}, headers=admin))
    routes = [(e["route"], e["actor"]) for e in trail["items"]]
    assert ("/v1/campaigns", issued["id"]) in routes
    assert ("/v1/tenant/settings", first_key["key_id"]) in routes
    assert ("/v1/products/csv", first_key["key_id"]) in routes
