"""Holdout groups: who is in a control group (deterministic, independent per campaign), and what
a campaign does with them: held out and never mailed, or sent the plain rules-tier email, with
consent first and retries that change nothing."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tailor.analytics.reports import campaigns_report
from tailor.db import Database
from tailor.delivery.smtp import DeliveryUnavailable
from tailor.demo.seed import seed_demo
from tailor.devtools.llm_stub import StubLlm
from tailor.devtools.smtp_sink import read_outbox, start_sink
from tailor.holdout import HoldoutPlan, bucket, in_control, salt_for
from tailor.models import (
    Campaign,
    CampaignKind,
    ConsentStatus,
    Generator,
    Holdout,
    HoldoutTreatment,
    SendStatus,
)
from tailor.personalise.context import CampaignContexts
from tailor.sending.errors import SendsDeferred
from tailor.store.campaigns import create_campaign
from tailor.store.consent import current_consent
from tailor.store.segments import BUCKETS, bucket_of
from tests.conftest import (
    Sink,
    key_headers,
    run_llm_campaign,
    settings_for,
    start_campaign,
    task_queue,
)
from tests.test_send_pipeline import _pipeline
from worker import build_worker
from workflows.campaign import CampaignWorkflow

# --- Membership ---------------------------------------------------------------------------------

IDS = range(1, 100_001)


def _sigma(fraction: float, n: int) -> float:
    return math.sqrt(fraction * (1 - fraction) / n)


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.1, 0.5])
def test_the_control_share_is_the_fraction(fraction: float) -> None:
    """On 100K consecutive ids the share is the fraction within 4 binomial standard deviations
    (0.0028 at 5%): what a random draw of that size promises 99.99% of the time. The hash is
    fixed, so this is a property of the hash, checked once, not a flaky draw."""
    members = HoldoutPlan("cmp_0123456789abcdef", fraction).controls(IDS)
    share = len(members) / len(IDS)
    assert abs(share - fraction) < 4 * _sigma(fraction, len(IDS))


def test_membership_is_stable_across_calls_and_processes() -> None:
    salt, ids = "cmp_stable", range(1, 5_001)
    here = sorted(HoldoutPlan(salt, 0.1).controls(ids))
    assert here == sorted(HoldoutPlan(salt, 0.1).controls(ids)) and here
    code = (
        "import json; from tailor.holdout import HoldoutPlan; "
        f"print(json.dumps(sorted(HoldoutPlan({salt!r}, 0.1).controls(range(1, 5001)))))"
    )
    for seed in ("1", "2"):  # Python's own str hash differs per process: never used
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                             capture_output=True, text=True)  # fmt: skip
        assert json.loads(out.stdout) == here


def test_a_larger_fraction_keeps_the_smaller_ones_members() -> None:
    five = HoldoutPlan("cmp_x", 0.05).controls(range(1, 20_001))
    ten = HoldoutPlan("cmp_x", 0.10).controls(range(1, 20_001))
    assert five < ten


def test_control_groups_are_independent_of_ab_cells_and_of_each_other() -> None:
    """The A/B slices' linear bucket would make a holdout all-or-nothing inside a cell; the
    keyed hash gives each cell its fraction, and two campaigns' controls overlap by ~fraction²."""
    cell = [c for c in IDS if bucket_of(c, salt=1234) < 1_000]  # a 10% A/B cell
    in_cell = HoldoutPlan("cmp_cell", 0.1).controls(cell)
    assert abs(len(in_cell) / len(cell) - 0.1) < 4 * _sigma(0.1, len(cell))

    a = HoldoutPlan("cmp_a", 0.1).controls(IDS)
    b = HoldoutPlan("cmp_b", 0.1).controls(IDS)
    both = len(a & b) / len(IDS)
    assert abs(both - 0.01) < 4 * _sigma(0.01, len(IDS))


def test_buckets_and_edges() -> None:
    assert all(0 <= bucket("s", c) < BUCKETS for c in range(1, 1_000))
    assert not in_control("s", 1, 0.0)
    assert HoldoutPlan("s").controls(range(100)) == set()  # no holdout: nobody


def test_a_journeys_steps_share_one_control_group() -> None:
    """Each journey email is a campaign row of its own; the salt is the journey's."""
    steps = [
        Campaign(id=f"jrn_{n}", tenant_id="demo", name="n", template_version_id=1,
                 kind=CampaignKind.JOURNEY, workflow_id="journey-demo-welcome-*",
                 holdout_fraction=0.2)
        for n in ("a1", "b2")
    ]  # fmt: skip
    one, two = (HoldoutPlan.of(s).controls(range(1, 2_001)) for s in steps)
    assert one == two and one
    batch = Campaign(id="cmp_1", tenant_id="demo", name="n", template_version_id=1,
                     workflow_id="campaign-cmp_1")  # fmt: skip
    assert salt_for(batch) == "cmp_1"


# --- The send pipeline (no Temporal; both backends) ---------------------------------------------


async def _holdout_campaign(
    db: Database, contacts: int, holdout: Holdout, **kwargs: Any
) -> tuple[str, list[int]]:
    seeded = await seed_demo(db, contacts=contacts)
    async with db.session() as session:
        campaign = await create_campaign(
            session=session, tenant_id=seeded.tenant_id, name="Holdout",
            template_version_id=seeded.template_version_id, segment={}, holdout=holdout,
            **kwargs,
        )  # fmt: skip
    return campaign.id, list(range(1, contacts + 1))


async def _sends(db: Database, campaign_id: str) -> dict[int, dict[str, Any]]:
    async with db.read() as conn:
        rows = await conn.exec_driver_sql(
            "SELECT contact_id, status, control, generator, explain FROM send "
            f"WHERE campaign_id = '{campaign_id}'"
        )
        found: dict[int, dict[str, Any]] = {}
        table: list[Any] = list(rows.all())
        for contact_id, status, control, generator, why in table:
            if isinstance(why, str):
                why = json.loads(why)
            found[int(contact_id)] = {"status": status, "control": bool(control),
                                      "generator": generator, "explain": why}  # fmt: skip
        return found


async def _consenting(db: Database, ids: list[int]) -> set[int]:
    async with db.read() as conn:
        consent = await current_consent(conn, contact_ids=ids)
    return {c for c, status in consent.items() if status == ConsentStatus.GRANTED}


async def test_a_retried_attempt_leaves_held_out_sends_as_they_were(
    db: Database, sink: Sink
) -> None:
    """The first attempt holds the control group out, then finds no SMTP server; the retry
    sends everyone else once and changes no held-out row, even with the campaign's holdout
    read differently (a row's control flag is fixed when it is made)."""
    campaign_id, everyone = await _holdout_campaign(db, 120, Holdout(fraction=0.25))
    ctx = await CampaignContexts(db).get(campaign_id)
    consenting = await _consenting(db, everyone)
    control = ctx.holdout.controls(everyone)
    pipeline = _pipeline(db, sink)

    sink.controller.stop()
    with pytest.raises((DeliveryUnavailable, SendsDeferred)):
        await pipeline.deliver(ctx, everyone, [])
    first = await _sends(db, campaign_id)
    held_out = {c for c, s in first.items() if s["status"] == SendStatus.HELD_OUT}
    assert held_out == control & consenting  # consent first: the others are suppressed
    assert {c for c, s in first.items() if s["control"]} == control
    assert all(first[c]["status"] == SendStatus.SUPPRESSED for c in control - consenting)
    assert read_outbox(sink.maildir, campaign_id) == []

    sink.controller, sink.handler = start_sink(sink.maildir, "127.0.0.1", sink.port)
    await pipeline.deliver(replace(ctx, holdout=HoldoutPlan(ctx.holdout.salt, 0.5)), everyone, [])
    second = await _sends(db, campaign_id)
    assert {c: second[c] for c in control} == {c: first[c] for c in control}
    assert {c for c, s in second.items() if s["control"]} == control
    emails = read_outbox(sink.maildir, campaign_id)
    sent = {c for c, s in second.items() if s["status"] == SendStatus.SENT}
    assert sent == consenting - control and len(emails) == len(sent)

    why = first[min(held_out)]["explain"]
    assert why["holdout"]["control"] is True and "not mailed" in why["holdout"]["why"]
    assert second[min(sent)]["explain"]["holdout"]["control"] is False


# --- Campaigns on the time-skipping server ------------------------------------------------------


async def test_a_ten_percent_holdout_mails_the_rest_and_holds_the_control_out(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    db = sqlite_db
    campaign_id, everyone = await _holdout_campaign(db, 400, Holdout(fraction=0.1))
    consenting = await _consenting(db, everyone)
    control = HoldoutPlan(campaign_id, 0.1).controls(everyone)
    assert 0.05 < len(control) / len(everyone) < 0.15
    queue = task_queue()
    async with build_worker(time_skipping_env.client, db, settings_for(db, sink), queue):
        handle = await start_campaign(time_skipping_env.client, campaign_id, queue)
        outcome = await handle.result()
        progress = await handle.query(CampaignWorkflow.progress)

    sends = await _sends(db, campaign_id)
    held_out = {c for c, s in sends.items() if s["status"] == SendStatus.HELD_OUT}
    assert held_out == control & consenting
    # The live progress reaches the total: the held-out people are processed, not pending.
    assert progress.held_out == len(held_out)
    assert progress.processed == progress.total == len(everyone)
    assert outcome.sent == len(consenting - control)
    emails = read_outbox(sink.maildir, campaign_id)
    assert len(emails) == outcome.sent
    async with db.read() as conn:
        rows = await conn.exec_driver_sql("SELECT id, email FROM contact")
        pairs: list[Any] = list(rows.all())
    addresses: dict[int, str] = {int(i): str(e) for i, e in pairs}
    assert not {addresses[c] for c in held_out} & {e.to for e in emails}
    assert all(sends[c]["generator"] is None for c in held_out)
    # The report's arms: each counted once, in the rollups the lift is read from.
    async with db.read() as conn:
        report = await campaigns_report(conn, tenant_id="demo", campaign_ids=[campaign_id])
    arms = report["holdout"]
    assert arms["control_group"]["held_out"] == len(held_out)
    assert arms["control_group"]["sent"] == 0
    assert arms["treatment_group"]["sent"] == outcome.sent
    assert arms["lift"]["open"] is None  # a control that got nothing cannot open


async def test_a_plain_control_gets_the_rules_tier_while_the_rest_get_the_llm(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink, stub: StubLlm
) -> None:
    db = sqlite_db
    plain = Holdout(fraction=0.3, treatment=HoldoutTreatment.PLAIN)
    campaign_id, everyone = await _holdout_campaign(db, 150, plain)
    consenting = await _consenting(db, everyone)
    control = HoldoutPlan(campaign_id, 0.3).controls(everyone)
    outcome = await run_llm_campaign(time_skipping_env, db, sink, stub, campaign_id)

    assert outcome.sent == len(consenting)  # everyone consenting is mailed
    sends = await _sends(db, campaign_id)
    mailed_control = control & consenting
    assert mailed_control and {sends[c]["generator"] for c in mailed_control} == {"rules"}
    assert {sends[c]["generator"] for c in consenting - control} == {"openai"}
    why = sends[min(mailed_control)]["explain"]
    assert why["generator"]["tier"] == "rules" and "control group" in why["generator"]["why"]
    assert why["holdout"]["treatment"] == "plain"
    assert "personalise:rules" in why["plan"] and "evaluate" not in why["plan"]
    assert all(s["control"] == (c in control) for c, s in sends.items())
    # The stub writes "<name>, picks we chose for you"; the control got the template's words.
    subjects = [e.full()["Subject"] for e in read_outbox(sink.maildir, campaign_id)]
    llm_subjects = [s for s in subjects if s.endswith("picks we chose for you")]
    assert len(llm_subjects) == len(consenting - control)


async def test_a_rules_only_campaign_makes_no_llm_call(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink, stub: StubLlm
) -> None:
    seeded = await seed_demo(sqlite_db, contacts=60)
    async with sqlite_db.session() as session:
        campaign = await create_campaign(
            session=session, tenant_id=seeded.tenant_id, name="Plain",
            template_version_id=seeded.template_version_id, segment={}, generator=Generator.RULES,
        )  # fmt: skip
    outcome = await run_llm_campaign(time_skipping_env, sqlite_db, sink, stub, campaign.id)
    assert outcome.sent == seeded.consenting
    assert stub.requests == []
    sends = await _sends(sqlite_db, campaign.id)
    assert {s["generator"] for s in sends.values() if s["status"] == "sent"} == {"rules"}


# --- The API ------------------------------------------------------------------------------------


@pytest.fixture
async def api(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink
) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    seeded = await seed_demo(db, contacts=60)
    settings = settings_for(db, sink, temporal_task_queue=task_queue())
    app = create_app(settings, temporal_client=time_skipping_env.client)
    worker = build_worker(time_skipping_env.client, db, settings, settings.temporal_task_queue)
    async with worker, app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://tailor",
            headers=await key_headers(db, "demo", "marketer"),
        ) as client:  # fmt: skip
            yield client, seeded.template_version_id


async def _done(http: httpx.AsyncClient, campaign_id: str) -> dict[str, Any]:
    for _ in range(600):
        body: dict[str, Any] = (await http.get(f"/v1/campaigns/{campaign_id}")).json()
        if body["status"] not in ("running", "paused", "scheduled"):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError("campaign did not finish")


async def test_the_api_takes_a_holdout_and_shows_who_was_held_out(
    api: tuple[httpx.AsyncClient, int],
) -> None:
    http, version = api
    base = {"name": "Spring", "template_version_id": version}
    for holdout, named in [
        ({"fraction": 0}, "holdout.fraction"),
        ({"fraction": 0.6}, "holdout.fraction"),
        ({"fraction": 0.00001}, "holdout.fraction"),
        ({"fraction": 0.1, "treatment": "half"}, "holdout.treatment"),
        ({"fraction": 0.1, "colour": "red"}, "holdout.colour"),
        ({"treatment": "none"}, "holdout.fraction"),
    ]:
        refused = await http.post("/v1/campaigns", json={**base, "holdout": holdout})
        assert refused.status_code == 422, refused.text
        assert named in refused.text
    assert (await http.get("/v1/campaigns")).json()["items"] == []  # nothing half-written

    started = await http.post(
        "/v1/campaigns", json={**base, "holdout": {"fraction": 0.2, "treatment": "none"}}
    )
    assert started.status_code == 202, started.text
    campaign = await _done(http, started.json()["id"])
    assert campaign["holdout"] == {"fraction": 0.2, "treatment": "none"}
    assert campaign["generator"] == "auto"
    assert campaign["counts"]["held_out"] > 0
    sends = (await http.get(f"/v1/campaigns/{campaign['id']}/sends?limit=200")).json()["items"]
    held = [s for s in sends if s["status"] == "held_out"]
    assert len(held) == campaign["counts"]["held_out"] and all(s["control"] for s in held)
    assert not any(s["control"] for s in sends if s["status"] == "sent")
    explained = (await http.get(f"/v1/sends/{held[0]['id']}/explain")).json()
    assert explained["control"] is True and explained["status"] == "held_out"
    assert "not mailed" in explained["explain"]["holdout"]["why"]

    plain = await http.post("/v1/campaigns", json={**base, "generator": "rules"})
    assert (await _done(http, plain.json()["id"]))["holdout"] is None
    no_holdout = (await http.get(f"/v1/campaigns/{plain.json()['id']}")).json()
    assert no_holdout["generator"] == "rules"
