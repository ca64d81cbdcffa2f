"""The demo's event stream: synthetic shoppers sign up, abandon carts, buy and have birthdays,
through the Segment-style API, so journeys start and run in Temporal like in production."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from tailor.cli.processes import StartupError
from tailor.config import Settings
from tailor.db import Database
from tailor.store.consent import ContactAddress, consenting_contacts

SETTLE_S = 15.0  # at most this long for the instant sends (welcome-1) before counting


async def _people(settings: Settings, count: int) -> list[ContactAddress]:
    """Consenting demo contacts."""
    db = Database(settings.resolved_database_url)
    try:
        async with db.read() as conn:
            return await consenting_contacts(conn, tenant_id="demo", limit=count)
    finally:
        await db.dispose()


def _stream(people: list[ContactAddress], seed: int = 11) -> list[dict[str, Any]]:
    """A plausible mix: a third sign up, a third abandon a cart (a third of those then buy),
    and the rest open emails or have a birthday today."""
    rng = random.Random(seed)
    calls: list[dict[str, Any]] = []
    for i, person in enumerate(people):
        contact_id = person.id
        user = f"demo-user-{contact_id}"

        def track(event: str, user: str = user, **properties: Any) -> None:
            calls.append({"type": "track", "userId": user, "event": event,
                          "properties": properties, "messageId": uuid.uuid4().hex})  # fmt: skip

        kind = i % 3
        if kind == 0:
            track("Signed Up", plan="newsletter")
        elif kind == 1:
            track("Cart Abandoned", products=[{"sku": f"KIT-10{rng.randint(1, 4)}"}])
            if rng.random() < 1 / 3:
                track("Order Completed", order_id=f"o-{contact_id}", revenue=99.0)
        elif rng.random() < 0.5:
            track("Milestone Birthday")
        else:
            track("Email Opened", campaign="demo")
    return calls


async def _all_runs(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every journey run of the tenant, page by page."""
    runs: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 200}
    while True:
        page = (await http.get("/v1/journeys/runs", params=params)).json()
        runs += page["items"]
        if page["next_cursor"] is None:
            return runs
        params["cursor"] = page["next_cursor"]


async def drive_journeys(api: str, key: str, settings: Settings, people: int,
                         console: Console) -> dict[str, Any]:  # fmt: skip
    """Install the built-in journeys, identify ``people`` shoppers, stream their events and
    report what the journeys did."""
    chosen = await _people(settings, people)
    if not chosen:
        raise StartupError("no consenting demo contacts to drive journeys for; rerun the seed")
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as http:
        installed = await http.post("/v1/journeys/builtins")
        if installed.status_code != 200:
            raise StartupError(f"the API refused the built-in journeys: {installed.text}")
        identify = [{"type": "identify", "userId": f"demo-user-{c.id}",
                     "traits": {"email": c.email}, "messageId": f"demo-identify-{c.id}"}
                    for c in chosen]  # fmt: skip
        answer = await http.post("/v1/batch", json={"batch": identify})
        if answer.status_code != 200:
            raise StartupError(f"the API refused the demo shoppers: {answer.text}")
        calls = _stream(chosen)
        with Progress(TextColumn("Streaming events"), BarColumn(), MofNCompleteColumn(),
                      console=console, transient=True) as progress:  # fmt: skip
            task = progress.add_task("events", total=len(calls))
            for call in calls:  # one at a time, as a CDP forwards them
                response = await http.post("/v1/events", json=call)
                if response.status_code != 200:
                    raise StartupError(f"the API refused an event: {response.text}")
                progress.advance(task)
        ids = {person.id for person in chosen}
        signed_up = {c["userId"] for c in calls if c["event"] == "Signed Up"}
        deadline = time.monotonic() + SETTLE_S
        # Until every sign-up's welcome journey has recorded its run and sent its first email
        # (it goes at once): a run records itself a moment after its event is accepted.
        while True:
            runs = [r for r in await _all_runs(http) if r["contact_id"] in ids]
            welcome = [r for r in runs if r["journey_key"] == "welcome"]
            done = len(welcome) >= len(signed_up) and all(r["emails_sent"] for r in welcome)
            if done or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
    by_journey = Counter(r["journey_key"] for r in runs)
    return {
        "events": len(calls),
        "journeys": dict(sorted(by_journey.items())),
        "ended_by_purchase": sum(1 for r in runs if "order.completed" in (r["reason"] or "")),
        "emails_sent": sum(r["emails_sent"] for r in runs),
        "running": sum(1 for r in runs if r["status"] == "running"),
    }
