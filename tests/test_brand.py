"""Brand compliance: banned phrases and spam triggers are refused; the disclaimer always shows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from temporalio.testing import WorkflowEnvironment

from tailor.db import Database
from tailor.devtools.llm_stub import StubLlm, default_answer
from tailor.devtools.smtp_sink import read_outbox
from tailor.models import Tenant
from tailor.personalise.brand import BrandPolicy, brand_violations
from tailor.personalise.prompts import GeneratedEmail
from tests.conftest import Sink, run_llm_campaign, seeded_campaign

EMAIL = GeneratedEmail(
    subject="{{first_name}}, fresh kitchen picks",
    preheader="",
    body="Hi {{first_name}}, our Chef's Knife is back and the kitchen shelves are full again.",
    cta_text="See the picks",
)


def test_banned_phrases_spam_triggers_and_long_subjects_are_named() -> None:
    policy = BrandPolicy(banned_phrases=["cheap"], max_subject_length=30)
    assert brand_violations(EMAIL, policy) == ["subject longer than 30 characters"]
    spammy = EMAIL.model_copy(update={"body": EMAIL.body + " Act now, it's cheap!"})
    assert brand_violations(spammy, BrandPolicy(banned_phrases=["cheap"])) == [
        "banned phrase 'cheap'",
        "spam trigger 'act now'",
    ]
    # Whole words only: "cheapest" is not "cheap", "winners" is not "winner".
    fine = EMAIL.model_copy(update={"body": EMAIL.body + " Our winners list is the cheapest."})
    assert brand_violations(fine, BrandPolicy(banned_phrases=["cheap"])) == []


def test_tone_pressure_shouting_and_casual_words_are_named() -> None:
    friendly = BrandPolicy()
    pushy = EMAIL.model_copy(update={"body": EMAIL.body + " Hurry, this is your LAST CHANCE!!!"})
    assert brand_violations(pushy, friendly) == [
        "tone: pressure 'hurry'",
        "tone: pressure 'last chance'",
        "tone: shouting (LAST, CHANCE)",
        "tone: 3 exclamation marks",
    ]
    casual = EMAIL.model_copy(update={"subject": "Hey {{first_name}}, awesome picks \U0001f525"})
    assert brand_violations(casual, friendly) == [], "a friendly brand may say hey"
    assert brand_violations(casual, BrandPolicy(tone="formal")) == [
        "tone: 'hey' is too casual for a formal brand",
        "tone: 'awesome' is too casual for a formal brand",
        "tone: emoji in a formal brand's email",
    ]
    # One acronym is not shouting; two exclamation marks are still fine.
    calm = EMAIL.model_copy(update={"body": EMAIL.body + " Free UK delivery! Enjoy!"})
    assert brand_violations(calm, BrandPolicy(tone="formal")) == []


async def test_campaign_content_keeps_the_brand_rules_and_the_disclaimer(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink, stub: StubLlm
) -> None:
    def cheap_first(body: dict[str, Any]) -> dict[str, Any]:
        answer = default_answer(body)
        if "Lead with the single most relevant product" not in str(body["messages"]):
            answer["body"] += " Everything is cheap this week."
        return answer

    stub.openai.answer = cheap_first
    campaign_id, consenting = await seeded_campaign(sqlite_db, 50)
    disclaimer = "Prices include VAT. Offers while stocks last."
    async with sqlite_db.write() as conn:
        policy = {"banned_phrases": ["cheap"], "required_disclaimer": disclaimer}
        await conn.execute(update(Tenant).values(brand_policy=policy))
    outcome = await run_llm_campaign(time_skipping_env, sqlite_db, sink, stub, campaign_id)
    assert outcome.sent == consenting
    assert "avoid_phrases" in stub.prompts() and "cheap" in stub.prompts(), "the model is told"
    async with sqlite_db.read() as conn:
        sql = "SELECT DISTINCT generator FROM send WHERE status = 'sent'"
        tiers = (await conn.exec_driver_sql(sql)).scalars().all()
    assert list(tiers) == ["openai"], "refused once, rewritten with the other prompt, then sent"
    emails = read_outbox(sink.maildir, campaign_id)
    assert len(emails) == consenting
    for email in emails:
        text = email.full().get_body(("plain",))
        assert text is not None
        content = text.get_content()
        assert "cheap" not in content.lower()
        assert disclaimer in content
