"""Evaluator verdicts on planted problems, and the regenerate-then-rules policy in a campaign."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from temporalio.testing import WorkflowEnvironment

from tailor.db import Database
from tailor.devtools.llm_stub import StubLlm, default_answer
from tailor.devtools.smtp_sink import read_outbox
from tailor.personalise.evaluator import evaluate
from tailor.personalise.prompts import ClusterRequest, GeneratedEmail, ProductFact
from tests.conftest import Sink, run_llm_campaign, seeded_campaign

NOW = datetime(2026, 11, 29, tzinfo=UTC)
REQUEST = ClusterRequest(
    tenant_name="Northwind", campaign_goal="seasonal promotion", tier="mid",
    top_category="kitchen", device="desktop", locale="en",
    recommendations=[ProductFact("Chef's Knife, 8-inch", "$99.00", "https://shop.example.com/p/K")],
)  # fmt: skip
GOOD = GeneratedEmail(
    subject="{{first_name}}, kitchen picks for you",
    preheader="",
    body="Hi {{first_name}}, our Chef's Knife is back at $99.00 and it is a favourite in the "
    "kitchen. We think it fits the way you cook, and there is more new kitchen gear this week.",
    cta_text="See the picks",
)


def _with(**changes: str) -> GeneratedEmail:
    return GOOD.model_copy(update=changes)


def test_honest_content_passes() -> None:
    evaluation = evaluate(GOOD, REQUEST, NOW)
    assert evaluation.passed, evaluation.verdict()
    assert evaluation.outcome == "passed"


def test_a_price_that_is_not_in_the_catalog_is_blocked() -> None:
    evaluation = evaluate(_with(body=GOOD.body.replace("$99.00", "$49.00")), REQUEST, NOW)
    assert not evaluation.passed
    assert evaluation.violations == ["price $49.00 is not a catalog price"]
    assert evaluation.outcome == "rejected"  # a wrong fact never goes to a person


def test_links_and_past_dates_are_blocked() -> None:
    linked = evaluate(_with(body=GOOD.body + " Order at https://shop.example.com/x"), REQUEST, NOW)
    assert "the model wrote a link" in linked.violations
    stale = evaluate(_with(body=GOOD.body + " Join our sale on November 2, 2026."), REQUEST, NOW)
    assert stale.violations == ["date 2026-11-02 is in the past"]
    future = evaluate(_with(body=GOOD.body + " Join our sale on December 12, 2026."), REQUEST, NOW)
    assert future.passed


def test_shouting_and_off_topic_content_score_low() -> None:
    shouting = evaluate(_with(subject="BUY NOW!!! HUGE SALE!!!", body="BUY!!! " * 5), REQUEST, NOW)
    assert shouting.quality < 0.7 and not shouting.passed
    assert shouting.outcome == "rejected"  # off topic too (relevance 0.40)
    off_topic = evaluate(
        _with(subject="{{first_name}}, hello from us",
              body="Hi {{first_name}}, we wanted to say hello and wish you a lovely week ahead "
                   "with plenty of sunshine, good books and time with friends and family."),
        REQUEST, NOW,
    )  # fmt: skip
    assert off_topic.relevance < 0.6 and not off_topic.passed
    assert off_topic.outcome == "rejected"  # off topic: dropped, not reviewed


async def test_refused_content_is_regenerated_with_another_prompt_then_used(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink, stub: StubLlm
) -> None:
    def by_prompt(body: dict[str, Any]) -> dict[str, Any]:
        answer = default_answer(body)
        if "Lead with the single most relevant product" not in str(body["messages"]):
            answer["body"] += " Prices start at $1.00 this weekend only!"  # v3: wrong price
        return answer

    campaign_id, consenting = await seeded_campaign(sqlite_db, 80)
    stub.openai.answer = by_prompt
    outcome = await run_llm_campaign(time_skipping_env, sqlite_db, sink, stub, campaign_id)
    assert outcome.sent == consenting
    async with sqlite_db.read() as conn:
        rows: list[Any] = list((await conn.exec_driver_sql(
            "SELECT prompt_version, count(*) FROM llm_usage WHERE NOT cache_hit "
            "GROUP BY prompt_version ORDER BY prompt_version")).all())  # fmt: skip
        sent_by: list[Any] = list((await conn.exec_driver_sql(
            "SELECT generator, count(*) FROM send WHERE status = 'sent' GROUP BY generator"
        )).all())  # fmt: skip
    generators = {str(generator): int(n) for generator, n in sent_by}
    calls = {str(version): int(n) for version, n in rows}
    assert calls["personalization_v3"] == calls["personalization_v4"] > 0, "each refused, redone"
    assert generators == {"openai": consenting}
    for email in read_outbox(sink.maildir, campaign_id):
        assert b"$1.00" not in email.path.read_bytes()


def test_off_brand_but_sound_content_goes_to_a_person() -> None:
    sound = evaluate(GOOD, REQUEST, NOW)
    off_brand = replace(sound, brand=['uses the banned phrase "cheap"'])
    assert not off_brand.passed and off_brand.needs_review
    assert off_brand.outcome == "review"
