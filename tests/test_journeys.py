"""Triggered journeys end to end: events in through the Segment-style API, the trigger agent,
JourneyWorkflow on a real (time-skipping) Temporal server, emails out through real SMTP.
Days of timers pass in milliseconds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tailor.config import Settings
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.devtools.llm_stub import StubLlm
from tailor.devtools.smtp_sink import read_outbox
from tailor.holdout import in_control
from tailor.journeys.definitions import journey_workflow_id
from tailor.models import Contact, Tenant
from tailor.observability.metrics import REGISTRY
from tailor.payloads import JourneyEnd
from tailor.store.journeys import install_builtins
from tests.conftest import Sink, key_headers, llm_settings, settings_for, start_time_skipping
from tests.conftest import task_queue as new_queue
from worker import build_worker
from workflows.journey import JourneyWorkflow


@pytest.fixture(scope="module")
async def journey_env() -> AsyncIterator[WorkflowEnvironment]:
    """Its own time-skipping server: these tests skip days of timers (see conftest)."""
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@dataclass
class Journeys:
    http: httpx.AsyncClient
    db: Database
    sink: Sink
    env: WorkflowEnvironment
    settings: Settings
    emails: dict[int, str]

    async def rows(self, sql: str) -> list[Any]:
        async with self.db.read() as conn:
            return list((await conn.exec_driver_sql(sql)).all())

    async def person(self, index: int = 0) -> tuple[int, str]:
        """A consenting demo contact, identified with a Segment userId: (contact id, userId)."""
        contact_id, email = (
            await self.rows(
                "SELECT c.id, c.email FROM contact c JOIN consent_record r ON r.contact_id = c.id "
                "WHERE r.status = 'granted' ORDER BY c.id"
            )
        )[index]
        user_id = f"user-{contact_id}"
        answer = await self.http.post(
            "/v1/identify",
            json={"userId": user_id, "traits": {"email": email}, "messageId": f"id-{contact_id}"},
        )
        assert answer.status_code == 200, answer.text
        return contact_id, user_id

    async def track(
        self, user_id: str, event: str, message_id: str | None = None, **properties: Any
    ) -> dict[str, Any]:
        answer = await self.http.post(
            "/v1/track",
            json={
                "userId": user_id,
                "event": event,
                "properties": properties,
                "messageId": message_id or uuid.uuid4().hex,
            },
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def handle(self, key: str, contact_id: int) -> WorkflowHandle[JourneyWorkflow, JourneyEnd]:
        return self.env.client.get_workflow_handle_for(
            JourneyWorkflow.run, journey_workflow_id("demo", key, contact_id)
        )

    async def end(self, handle: WorkflowHandle[JourneyWorkflow, JourneyEnd]) -> JourneyEnd:
        """Skip a week of timers, then the journey's result. (The test server does not skip
        time on its own for a run started with signal-with-start.)"""
        await self.env.sleep(timedelta(days=7))
        return await handle.result()

    def emails_to(self, contact_id: int) -> list[EmailMessage]:
        email = self.emails[contact_id]
        return [m.full() for m in read_outbox(self.sink.maildir) if email in m.to]


@asynccontextmanager
async def running(
    env: WorkflowEnvironment, db: Database, sink: Sink, **overrides: object
) -> AsyncIterator[Journeys]:
    """The demo tenant with the built-in journeys, a worker and the API on one task queue."""
    await seed_demo(db, contacts=20)
    async with db.session() as session:
        await install_builtins(session=session, tenant_id="demo")
    queue = new_queue()
    settings = settings_for(db, sink, temporal_task_queue=queue, **overrides)
    app = create_app(settings, temporal_client=env.client)
    async with (
        build_worker(env.client, db, settings, queue),
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers=await key_headers(db, "demo", "admin"),
        ) as http,
    ):
        async with db.read() as conn:
            rows = await conn.execute(select(Contact.id, Contact.email))  # type: ignore[call-overload]
            emails: dict[int, str] = dict(rows.all())
        yield Journeys(http, db, sink, env, settings, emails)


@pytest.fixture
async def journeys(
    journey_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> AsyncIterator[Journeys]:
    async with running(journey_env, sqlite_db, sink) as state:
        yield state


def _event_to_send() -> tuple[float, float]:
    """The trigger path's latency histogram for the demo tenant: (count, sum of seconds)."""
    labels = {"tenant": "demo"}
    return (
        REGISTRY.get_sample_value("tailor_journey_event_to_send_seconds_count", labels) or 0.0,
        REGISTRY.get_sample_value("tailor_journey_event_to_send_seconds_sum", labels) or 0.0,
    )


async def test_a_welcome_series_sends_three_emails_over_days(journeys: Journeys) -> None:
    contact_id, user = await journeys.person()
    count, total = _event_to_send()
    await journeys.track(user, "Signed Up")
    end = await journeys.end(journeys.handle("welcome", contact_id))
    # Only the first email goes on the trigger; its event-to-send latency is observed once
    # (in real seconds: the test server skips the days between the others).
    after_count, after_total = _event_to_send()
    assert after_count == count + 1
    assert 0.0 < after_total - total < 60.0

    assert (end.status, end.emails_sent) == ("completed", 3)
    subjects = [m["Subject"] for m in journeys.emails_to(contact_id)]
    assert len(subjects) == 3 and any("welcome" in s.lower() for s in subjects)
    (run,) = await journeys.rows(
        f"SELECT status, emails_sent FROM journey_run WHERE contact_id = {contact_id}"
    )
    assert tuple(run) == ("completed", 3)
    explains = await journeys.rows(
        f"SELECT explain FROM send WHERE contact_id = {contact_id} AND occurrence != ''"
    )
    assert len(explains) == 3
    assert all('"journey": "welcome"' in e[0] for e in explains)
    # The second and third go at the person's best local hour, and say why.
    assert any("00 local" in e[0] for e in explains)


async def test_a_purchase_cancels_the_cart_reminder(journeys: Journeys) -> None:
    contact_id, user = await journeys.person(1)
    await journeys.track(user, "Cart Abandoned", products=[{"sku": "KIT-103"}])
    handle = journeys.handle("cart_abandonment", contact_id)
    await journeys.env.sleep(timedelta(minutes=20))  # inside the hour's wait
    await journeys.track(user, "Order Completed", order_id="o-1")
    end = await journeys.end(handle)

    assert (end.status, end.emails_sent) == ("exited", 0)
    assert "order.completed" in end.reason
    # The first order is a milestone: that journey thanks them instead.
    milestone = await journeys.end(journeys.handle("milestone", contact_id))
    assert milestone.emails_sent == 1
    (mail,) = journeys.emails_to(contact_id)
    assert "cart" not in mail["Subject"].lower()


async def test_an_abandoned_cart_gets_one_reminder_after_an_hour(journeys: Journeys) -> None:
    contact_id, user = await journeys.person(2)
    observed = _event_to_send()
    first = await journeys.track(user, "Cart Abandoned", "cart-1", products=[{"sku": "KIT-103"}])
    again = await journeys.track(user, "Cart Abandoned", "cart-1", products=[{"sku": "KIT-103"}])
    assert (first["accepted"], again["duplicates"]) == (1, 1)
    # A new abandonment while the journey runs is a signal to it, not a second journey.
    await journeys.track(user, "Cart Abandoned", "cart-2", products=[{"sku": "KIT-103"}])
    handle = journeys.handle("cart_abandonment", contact_id)
    state = await handle.query(JourneyWorkflow.state)
    assert (state.step, state.exit, state.retriggers) == ("wait 60 min", None, 1)
    end = await journeys.end(handle)

    assert (end.status, end.emails_sent) == ("completed", 1)
    assert _event_to_send() == observed  # the reminder waited an hour by design: not counted
    (mail,) = journeys.emails_to(contact_id)
    body = mail.get_body(("plain",))
    assert body is not None and "Chef" in body.get_content()  # the cart item, by name
    runs = await journeys.rows(f"SELECT id FROM journey_run WHERE contact_id = {contact_id}")
    assert len(runs) == 1


async def test_revoking_consent_stops_a_running_journey(journeys: Journeys) -> None:
    contact_id, user = await journeys.person(3)
    await journeys.track(user, "Signed Up")
    handle = journeys.handle("welcome", contact_id)
    await journeys.env.sleep(timedelta(hours=1))  # the first email goes at once
    answer = await journeys.http.post(
        f"/v1/contacts/{contact_id}/consent",
        json={
            "status": "revoked",
            "source": "preference-center",
            "method": "click",
            "wording_version": "v1",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["stopped_journeys"] == [handle.id]
    end = await journeys.end(handle)

    assert (end.status, end.emails_sent) == ("stopped", 1)
    assert len(journeys.emails_to(contact_id)) == 1


async def test_over_the_daily_limit_a_send_waits_for_the_next_window(journeys: Journeys) -> None:
    async with journeys.db.write() as conn:
        await conn.execute(update(Tenant).values(daily_email_limit=1))
    contact_id, user = await journeys.person(4)
    await journeys.track(user, "Signed Up")  # welcome 1 now: the day's one email
    await journeys.track(user, "Milestone Birthday")
    milestone = journeys.handle("milestone", contact_id)
    await journeys.env.sleep(timedelta(days=1))

    assert len(journeys.emails_to(contact_id)) == 1  # the birthday email waits, not sent
    async with journeys.db.write() as conn:
        await conn.execute(update(Tenant).values(daily_email_limit=5))
    end = await journeys.end(milestone)  # the next window opens, and it goes
    assert end.emails_sent == 1
    subjects = [m["Subject"].lower() for m in journeys.emails_to(contact_id)]
    assert any("birthday" in s for s in subjects)


async def test_failed_trigger_processing_is_dead_lettered_and_replayed(
    journeys: Journeys, sink: Sink
) -> None:
    contact_id, user = await journeys.person(5)
    # An API whose Temporal is unreachable: the event is stored, its processing is not.
    offline = create_app(journeys.settings.model_copy(update={"temporal_address": "127.0.0.1:9"}))
    async with (
        offline.router.lifespan_context(offline),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=offline),
            base_url="http://t",
            headers=await key_headers(journeys.db, "demo", "ingest"),
        ) as http,
    ):
        answer = await http.post(
            "/v1/track",
            json={"userId": user, "event": "Signed Up", "messageId": "signup-5"},
        )
        assert answer.status_code == 200, answer.text

    listed = (await journeys.http.get("/v1/dead-letters")).json()
    (letter,) = listed["items"]
    assert (letter["event"], letter["contact_id"], letter["status"]) == (
        "signed.up",
        contact_id,
        "open",
    )
    assert "unreachable" in letter["error"]

    replayed = await journeys.http.post(f"/v1/dead-letters/{letter['id']}/replay")
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["started"] == ["welcome"]
    end = await journeys.end(journeys.handle("welcome", contact_id))
    assert end.emails_sent == 3
    assert (await journeys.http.get("/v1/dead-letters")).json()["items"] == []


async def test_a_running_journey_keeps_its_version(journeys: Journeys) -> None:
    contact_id, user = await journeys.person(6)
    await journeys.track(user, "Signed Up")
    handle = journeys.handle("welcome", contact_id)
    await journeys.env.sleep(timedelta(hours=1))
    shorter = await journeys.http.post(
        "/v1/journeys",
        json={
            "key": "welcome",
            "name": "Welcome, short",
            "steps": [{"type": "send", "name": "hello", "goal": "welcome_1"}],
        },
    )
    assert shorter.status_code == 201, shorter.text
    assert shorter.json()["version"] == 2
    end = await journeys.end(handle)
    assert end.emails_sent == 3  # v1's three emails, not v2's one

    other, other_user = await journeys.person(7)
    await journeys.track(other_user, "Signed Up")
    assert (await journeys.end(journeys.handle("welcome", other))).emails_sent == 1


async def test_engagement_ends_a_re_engagement_journey(journeys: Journeys) -> None:
    contact_id, user = await journeys.person(8)
    await journeys.track(user, "Engagement Lapsed")
    handle = journeys.handle("re_engagement", contact_id)
    await journeys.env.sleep(timedelta(days=2))  # first email sent at the best hour
    await journeys.track(user, "Email Opened")
    end = await journeys.end(handle)
    assert (end.status, end.emails_sent) == ("exited", 1)


async def test_bad_journey_definitions_are_refused(journeys: Journeys) -> None:
    answer = await journeys.http.post(
        "/v1/journeys",
        json={"key": "promo", "name": "Only waits", "steps": [{"type": "wait", "minutes": 5}]},
    )
    assert answer.status_code == 422 and "send step" in answer.json()["message"]
    answer = await journeys.http.post(
        "/v1/journeys",
        json={
            "key": "promo",
            "name": "x",
            "steps": [{"type": "send", "name": "a", "goal": "nope"}],
        },
    )
    assert answer.status_code == 422 and "goal" in answer.json()["message"]


async def test_the_cart_email_is_written_during_the_wait_and_sent_on_time(
    journey_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink, stub: StubLlm
) -> None:
    """With an LLM tier, the email is generated speculatively while the journey waits, so
    the send when the timer fires makes no model call of its own."""
    async with running(journey_env, sqlite_db, sink, **llm_settings(stub)) as journeys:
        contact_id, user = await journeys.person(9)
        await journeys.track(user, "Cart Abandoned", products=[{"sku": "KIT-103"}])
        handle = journeys.handle("cart_abandonment", contact_id)
        await journeys.env.sleep(timedelta(minutes=10))
        for _ in range(100):  # the prepare activity runs alongside the hour's timer
            if stub.requests:
                break
            await asyncio.sleep(0.05)
        assert len(stub.requests) == 1 and journeys.emails_to(contact_id) == []
        assert "cart reminder" in stub.prompts()

        end = await journeys.end(handle)
        assert end.emails_sent == 1 and len(stub.requests) == 1  # the send used what was written
        (mail,) = journeys.emails_to(contact_id)
        why = await journeys.rows(
            f"SELECT generator FROM send WHERE contact_id = {contact_id} AND occurrence != ''"
        )
        assert why == [("openai",)]
        assert mail["Subject"]


async def test_a_journeys_control_group_gets_none_of_its_emails_and_waits_for_no_limit(
    journeys: Journeys,
) -> None:
    """Half the people of a new welcome version are its control group: held out of every
    step (no email, nothing counted against the daily limit of 1), the rest mailed."""
    answer = await journeys.http.post(
        "/v1/journeys",
        json={
            "key": "welcome",
            "name": "Welcome, measured",
            "steps": [{"type": "send", "name": "hello", "goal": "welcome_1"},
                      {"type": "send", "name": "picks", "goal": "welcome_2"}],
            "holdout": {"fraction": 0.5},
        },
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    assert answer.json()["holdout"] == {"fraction": 0.5, "treatment": "none"}
    listed = (await journeys.http.get("/v1/journeys")).json()["data"]
    assert next(j for j in listed if j["key"] == "welcome")["holdout"]["fraction"] == 0.5
    async with journeys.db.write() as conn:
        await conn.execute(update(Tenant).values(daily_email_limit=1))
    consenting = [
        c for (c,) in await journeys.rows(
            "SELECT DISTINCT c.id FROM contact c JOIN consent_record r ON r.contact_id = c.id "
            "WHERE r.status = 'granted' ORDER BY c.id"
        )
    ]  # fmt: skip
    salt = "journey-demo-welcome-*"  # every step and version of the welcome journey
    held = next(i for i, c in enumerate(consenting) if in_control(salt, c, 0.5))
    mailed = next(i for i, c in enumerate(consenting) if not in_control(salt, c, 0.5))
    control, control_user = await journeys.person(held)
    treated, treated_user = await journeys.person(mailed)

    await journeys.track(control_user, "Signed Up")
    await journeys.track(treated_user, "Signed Up")
    # Within the hour the control person also abandons a cart: that journey has no holdout,
    # and the two held-out welcome emails do not use up their one email a day.
    await journeys.track(control_user, "Cart Abandoned", products=[{"sku": "KIT-103"}])
    await journeys.env.sleep(timedelta(hours=2))
    assert len(journeys.emails_to(control)) == 1  # the cart reminder, not throttled
    assert len(journeys.emails_to(treated)) == 1  # hello; picks waits for tomorrow's window

    end = await journeys.handle("welcome", control).result()  # done: nothing to wait for
    assert (end.status, end.emails_sent) == ("completed", 0)
    held_out = await journeys.rows(
        f"SELECT status, control, explain FROM send WHERE contact_id = {control} "
        "AND campaign_id LIKE 'jrn_%' AND status != 'sent'"
    )
    assert [(s, bool(c)) for s, c, _ in held_out] == [("held_out", True)] * 2
    assert all('"journey": "welcome"' in why and "not mailed" in why for *_, why in held_out)
    async with journeys.db.write() as conn:  # the limit counts real days: lift it
        await conn.execute(update(Tenant).values(daily_email_limit=5))
    assert (await journeys.end(journeys.handle("welcome", treated))).emails_sent == 2
