"""A/B tests end to end: the API, AbTestWorkflow on the time-skipping server, its cells and
rollout as real campaigns, engagement through ``POST /v1/events/engagement``."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from rag.index import shared_index
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.models import Campaign, Send
from tailor.store.campaigns import DELIVERED
from tests.conftest import Sink, key_headers, settings_for, task_queue
from worker import build_worker

CONTACTS = 600


class AbApi:
    def __init__(
        self, http: httpx.AsyncClient, db: Database, version_a: int, version_b: int, home: Path,
        app: Any = None,
    ) -> None:  # fmt: skip
        self.app = app
        self.home = home
        self.http = http
        self.db = db
        self.a = version_a
        self.b = version_b

    async def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.http.request(method, path, **kwargs)
        assert response.status_code < 300, response.text
        body: dict[str, Any] = response.json()
        return body

    async def start(self, **overrides: Any) -> dict[str, Any]:
        body = {
            "name": "Spring sale subject test",
            "variants": [
                {"key": "A", "template_version_id": self.a},
                {"key": "B", "template_version_id": self.b},
            ],
            "metric": "click",
            "test_fraction": 0.5,
            "min_sent_per_variant": 50,
            "window_hours": 2,
            **overrides,
        }
        return await self.ok("POST", "/v1/ab-tests", json=body)

    async def wait_for(self, test_id: str, *statuses: str, timeout: float = 90) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                test = await self.ok("GET", f"/v1/ab-tests/{test_id}")
                progress = test.get("progress") or {}
                if test["status"] in statuses or progress.get("status") in statuses:
                    return test
                await asyncio.sleep(0.1)

    async def delivered(self, campaign_id: str) -> list[int]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(Send.contact_id).where(  # type: ignore[call-overload]
                    col(Send.campaign_id) == campaign_id, col(Send.status).in_(DELIVERED)
                )
            )
            return [int(r) for r in rows.scalars()]


@pytest.fixture
async def ab(
    isolated_time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink,
    tmp_path: Path, request: pytest.FixtureRequest,
) -> AsyncIterator[AbApi]:  # fmt: skip
    """``indirect`` True turns retrieval (and the exemplar corpus) on."""
    env = isolated_time_skipping_env
    seeded = await seed_demo(sqlite_db, contacts=CONTACTS)
    settings = settings_for(
        sqlite_db,
        sink,
        temporal_task_queue=task_queue(),
        rag_enabled=getattr(request, "param", False),
        home=tmp_path,
    )
    app = create_app(settings, temporal_client=env.client)
    async with (
        build_worker(env.client, sqlite_db, settings, settings.temporal_task_queue),
        app.router.lifespan_context(app),
    ):
        transport = httpx.ASGITransport(app=app)
        headers = await key_headers(sqlite_db, "demo", "marketer")
        async with httpx.AsyncClient(
            transport=transport, base_url="http://tailor", headers=headers
        ) as http:
            template = await http.post(
                "/v1/templates",
                json={
                    "name": "Spring sale B",
                    "subject": "{{first_name}}, your spring picks are 20% off today",
                    "preheader": "Three days only",
                    "body": "Hi {{first_name}},\n\nSpring is here and so is our sale.",
                    "cta_text": "See the sale",
                    "cta_url": "https://shop.example.com/sale",
                },
            )
            assert template.status_code == 201, template.text
            version_b = template.json()["versions"][0]["id"]
            yield AbApi(http, sqlite_db, seeded.template_version_id, version_b, tmp_path, app)


async def _click(api: AbApi, campaign_id: str, contacts: list[int], rate: float, seed: int) -> None:
    rng = random.Random(seed)
    for contact_id in contacts:
        if rng.random() < rate:
            await api.ok(
                "POST",
                "/v1/events/engagement",
                json={"type": "click", "campaign_id": campaign_id, "contact_id": contact_id},
            )


@pytest.mark.parametrize("ab", [True], indirect=True, ids=["rag"])
async def test_the_better_variant_wins_and_only_the_rest_of_the_audience_gets_it(
    ab: AbApi, isolated_time_skipping_env: WorkflowEnvironment
) -> None:
    with isolated_time_skipping_env.auto_time_skipping_disabled():
        started = await ab.start()
        test_id = started["id"]
        await ab.wait_for(test_id, "waiting")
        cells = started["cell_campaign_ids"]
        cell_a, cell_b = await ab.delivered(cells["A"]), await ab.delivered(cells["B"])
        assert len(cell_a) >= 50 and len(cell_b) >= 50
        await _click(ab, cells["A"], cell_a, 0.05, seed=1)
        await _click(ab, cells["B"], cell_b, 0.40, seed=2)
        await ab.ok("POST", f"/v1/ab-tests/{test_id}/decide")
        done = await ab.wait_for(test_id, "completed", "failed")

    assert done["status"] == "completed"
    assert done["winner"] == "B"
    assert done["decision"]["how"] == "decided"
    assert done["decision"]["probabilities"]["B"] >= 0.95
    rollout = done["rollout_campaign_id"]
    async with ab.db.read_session() as session:
        campaign = await session.get(Campaign, rollout)
        assert campaign is not None and campaign.template_version_id == ab.b
        consenting = (
            await session.execute(
                select(func.count(func.distinct(Send.contact_id))).where(
                    col(Send.status).in_(DELIVERED)
                )
            )
        ).scalar_one()
    rolled = await ab.delivered(rollout)
    # Everyone consenting got exactly one email: a cell's or the rollout's, never both.
    assert not set(rolled) & (set(cell_a) | set(cell_b))
    assert len(rolled) + len(cell_a) + len(cell_b) == consenting
    # The winner joined the tenant's exemplars, for retrieval in later campaigns.
    index = shared_index(url=None, path=ab.home / "qdrant", model="all-MiniLM-L6-v2")
    assert index is not None
    query = index.embedder.encode(["your spring picks are 20% off today"])[0]
    hits = index.store.search("demo", query, limit=5)
    assert f"ab-{test_id}-B" in [hit.exemplar.id for hit in hits]
    assert f"ab-{test_id}-B" not in [
        h.exemplar.id for h in index.store.search("other", query, limit=5)
    ]


async def test_an_inconclusive_test_extends_once_then_sends_the_default(
    ab: AbApi, isolated_time_skipping_env: WorkflowEnvironment
) -> None:
    started = await ab.start(default_variant="B", window_hours=1)
    await ab.wait_for(started["id"], "waiting")
    # The first window ends with nothing to decide on; the second (the extension) too.
    await isolated_time_skipping_env.sleep(timedelta(hours=1, minutes=1))
    await ab.wait_for(started["id"], "extended")
    await isolated_time_skipping_env.sleep(timedelta(hours=1, minutes=1))
    done = await ab.wait_for(started["id"], "completed", "failed")
    assert done["status"] == "completed"
    assert done["winner"] == "B" and done["decision"]["how"] == "default"
    assert "inconclusive" in done["decision"]["reason"]
    assert await ab.delivered(done["rollout_campaign_id"])


async def test_a_winner_chosen_by_hand_is_rolled_out_at_once(
    ab: AbApi, isolated_time_skipping_env: WorkflowEnvironment
) -> None:
    with isolated_time_skipping_env.auto_time_skipping_disabled():
        started = await ab.start(window_hours=48)
        await ab.wait_for(started["id"], "waiting")
        wrong = await ab.http.post(f"/v1/ab-tests/{started['id']}/winner", json={"variant": "Z"})
        assert wrong.status_code == 422 and "A" in wrong.text
        await ab.ok("POST", f"/v1/ab-tests/{started['id']}/winner", json={"variant": "A"})
        done = await ab.wait_for(started["id"], "completed", "failed")
    assert done["winner"] == "A" and done["decision"]["how"] == "manual"
    late = await ab.http.post(f"/v1/ab-tests/{started['id']}/decide")
    assert late.status_code == 409


async def test_bad_ab_tests_are_refused_with_the_field_named(ab: AbApi) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"variants": [{"key": "A", "template_version_id": ab.a}]}, "variants"),
        ({"variants": [{"key": "A", "template_version_id": ab.a}] * 2}, "unique"),
        ({"default_variant": "C"}, "default_variant"),
        ({"test_fraction": 0.9}, "test_fraction"),
        ({"variants": [{"key": "A", "template_version_id": ab.a},
                       {"key": "B", "template_version_id": 99999}]}, "variants.1"),
    ]  # fmt: skip
    for overrides, named in cases:
        body: dict[str, Any] = {
            "name": "x",
            "variants": [
                {"key": "A", "template_version_id": ab.a},
                {"key": "B", "template_version_id": ab.b},
            ],
            **overrides,
        }
        response = await ab.http.post("/v1/ab-tests", json=body)
        assert response.status_code == 422, (overrides, response.text)
        assert named in response.text
    async with ab.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(Campaign))).scalar_one() == 0


async def test_a_cancelled_test_rolls_nothing_out(
    ab: AbApi, isolated_time_skipping_env: WorkflowEnvironment
) -> None:
    with isolated_time_skipping_env.auto_time_skipping_disabled():
        started = await ab.start(window_hours=48)
        await ab.wait_for(started["id"], "waiting")
        await ab.ok("POST", f"/v1/ab-tests/{started['id']}/cancel")
        done = await ab.wait_for(started["id"], "cancelled")
    assert done["winner"] is None and done["rollout_campaign_id"] is None
    again = await ab.http.post(f"/v1/ab-tests/{started['id']}/cancel")
    assert again.status_code == 409


async def test_ai_vs_plain_is_one_field_and_the_plain_side_stays_plain_to_the_rollout(
    ab: AbApi, isolated_time_skipping_env: WorkflowEnvironment
) -> None:
    with isolated_time_skipping_env.auto_time_skipping_disabled():
        started = await ab.ok(
            "POST",
            "/v1/ab-tests",
            json={"name": "Does the AI pay?", "ai_vs_plain": True, "template_version_id": ab.a,
                  "metric": "click", "test_fraction": 0.5, "min_sent_per_variant": 50,
                  "window_hours": 48},
        )  # fmt: skip
        cells = started["cell_campaign_ids"]
        assert set(cells) == {"ai", "plain"}
        await ab.wait_for(started["id"], "waiting")
        plain = await ab.delivered(cells["plain"])
        ai = await ab.delivered(cells["ai"])
        await _click(ab, cells["ai"], ai, 0.3, seed=3)
        await _click(ab, cells["plain"], plain, 0.1, seed=4)
        test = await ab.ok("GET", f"/v1/ab-tests/{started['id']}")
        await ab.ok("POST", f"/v1/ab-tests/{started['id']}/winner", json={"variant": "plain"})
        done = await ab.wait_for(started["id"], "completed", "failed")

    variants = {v["key"]: v for v in test["variants"]}
    assert variants["ai"]["generator"] == "auto" and variants["plain"]["generator"] == "rules"
    assert variants["ai"]["template_version_id"] == variants["plain"]["template_version_id"]
    lift = variants["ai"]["lift_over_plain"]
    assert lift["plain_variant"] == "plain" and lift["metric"] == "click"
    assert lift["treatment_rate"] == pytest.approx(variants["ai"]["rate"], abs=1e-4)
    assert lift["difference"] > 0 and lift["ci95"][0] < lift["difference"] < lift["ci95"][1]
    assert "lift_over_plain" not in variants["plain"]
    # The report reads the same test from the rollups: AI over plain, every measure.
    report = await ab.ok("GET", f"/v1/reports/ab-tests/{started['id']}")
    assert report["baseline"] == "plain"
    reported = {v["key"]: v for v in report["variants"]}
    assert reported["plain"]["lift"] is None
    assert reported["ai"]["generator"] == "auto" and reported["plain"]["generator"] == "rules"
    assert reported["ai"]["clicked"] > reported["plain"]["clicked"]
    assert reported["ai"]["lift"]["click"]["difference"] > 0
    async with ab.db.read_session() as session:
        campaigns = {
            key: (await session.get(Campaign, campaign_id))
            for key, campaign_id in [*cells.items(), ("rollout", done["rollout_campaign_id"])]
        }
        kinds = {key: c.generator for key, c in campaigns.items() if c is not None}
        sent = await session.execute(
            select(Send).where(col(Send.campaign_id) == cells["plain"], col(Send.status) == "sent")
        )
        explained = sent.scalars().first()
    assert kinds == {"ai": "auto", "plain": "rules", "rollout": "rules"}
    assert explained is not None and explained.explain is not None
    assert "rules tier only" in explained.explain["generator"]["why"]


async def test_bad_ai_vs_plain_tests_are_refused_with_the_field_named(ab: AbApi) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"ai_vs_plain": True}, "template_version_id"),
        ({"ai_vs_plain": True, "template_version_id": ab.a,
          "variants": [{"key": "A", "template_version_id": ab.a}] * 2}, "ai_vs_plain"),
        ({"template_version_id": ab.a, "variants": [{"key": "A", "template_version_id": ab.a},
                                                     {"key": "B", "template_version_id": ab.b}]},
         "template_version_id"),
        ({"ai_vs_plain": True, "template_version_id": 99999}, "template_version_id"),
        ({"ai_vs_plain": True, "template_version_id": ab.a, "default_variant": "A"},
         "default_variant"),
        ({"variants": [{"key": "A", "template_version_id": ab.a, "generator": "gpt"},
                       {"key": "B", "template_version_id": ab.b}]}, "generator"),
    ]  # fmt: skip
    for overrides, named in cases:
        response = await ab.http.post("/v1/ab-tests", json={"name": "x", **overrides})
        assert response.status_code == 422, (overrides, response.text)
        assert named in response.text, (overrides, response.text)
    async with ab.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(Campaign))).scalar_one() == 0
