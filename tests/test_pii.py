"""PII found in generated content is redacted before sending, offline, and recorded by type."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import pytest
from sqlalchemy import update
from temporalio.testing import WorkflowEnvironment

from tailor.db import Database
from tailor.devtools.llm_stub import StubLlm, default_answer
from tailor.devtools.smtp_sink import read_outbox
from tailor.models import Contact
from tailor.personalise.pii import PiiScanner
from tests.conftest import (
    Sink,
    llm_settings,
    run_llm_campaign,
    seeded_campaign,
    settings_for,
    start_campaign,
    task_queue,
)
from worker import build_worker

PLANTED = {
    "ada.lovelace@gmail.com": "EMAIL_ADDRESS",
    "+1 415 555 0134": "PHONE_NUMBER",
    "4111 1111 1111 1111": "CREDIT_CARD",
    "DE89370400440532013000": "IBAN_CODE",
}


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    return PiiScanner()


def test_scanner_finds_and_redacts_planted_pii_without_network(
    scanner: PiiScanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the PII scanner tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    text = "Hi {{first_name}}! " + ". ".join(f"Reach {value}" for value in PLANTED)
    redacted, entities = scanner.redact(text)
    assert set(entities) == set(PLANTED.values())
    for value in PLANTED:
        assert value not in redacted
    assert redacted.startswith("Hi {{first_name}}!") and "[redacted]" in redacted


def test_clean_text_is_left_alone(scanner: PiiScanner) -> None:
    text = "Hi {{first_name}}, our Chef's Knife is $99.00 this week. Happy cooking!"
    assert scanner.redact(text) == (text, [])


async def test_pii_written_by_the_model_never_reaches_a_recipient(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink, stub: StubLlm
) -> None:
    def leaky(body: dict[str, Any]) -> dict[str, Any]:
        answer = default_answer(body)
        answer["body"] += " Questions? Ask our rep at ada.lovelace@gmail.com or +1 415 555 0134."
        return answer

    campaign_id, consenting = await seeded_campaign(sqlite_db, 60)
    stub.openai.answer = leaky
    outcome = await run_llm_campaign(time_skipping_env, sqlite_db, sink, stub, campaign_id)
    assert outcome.sent == consenting
    for email in read_outbox(sink.maildir, campaign_id):
        raw = email.path.read_bytes()
        assert b"ada.lovelace@gmail.com" not in raw and b"415 555 0134" not in raw
        assert b"[redacted]" in raw
    async with sqlite_db.read() as conn:
        rows = list((await conn.exec_driver_sql("SELECT entities FROM pii_incident")).all())
    assert rows, "every redaction leaves an incident record"
    recorded = [json.loads(row[0]) if isinstance(row[0], str) else row[0] for row in rows]
    assert all(set(r) == {"EMAIL_ADDRESS", "PHONE_NUMBER"} for r in recorded)
    assert "ada.lovelace" not in str(recorded), "incidents hold entity types, never values"


async def test_planted_profile_pii_reaches_no_prompt_history_or_log(
    time_skipping_env: WorkflowEnvironment,
    sqlite_db: Database,
    sink: Sink,
    stub: StubLlm,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every free-text profile field carries PII; prompts see cluster features only, and the
    workflow history holds ids and counts only."""
    campaign_id, consenting = await seeded_campaign(sqlite_db, 40)
    planted = {
        "last_name": "Quarterfield-Wolstenholme",
        "external_id": "crm-078-05-1120",
        "preferred_categories": ["call me on +1 415 555 0134", "kitchen"],
        "browse_items": ["ada.lovelace@gmail.com"],
        "cart_items": ["DE89370400440532013000"],
    }
    async with sqlite_db.write() as conn:
        await conn.execute(update(Contact).values(first_name="Zebediah", **planted))
    caplog.set_level(logging.INFO)  # what Tailor's processes log
    queue = task_queue()
    settings = settings_for(sqlite_db, sink, **llm_settings(stub))
    async with build_worker(time_skipping_env.client, sqlite_db, settings, queue):
        handle = await start_campaign(time_skipping_env.client, campaign_id, queue)
        outcome = await handle.result()
        history = (await handle.fetch_history()).to_json()
    assert outcome.sent == consenting and stub.requests
    async with sqlite_db.read() as conn:
        emails = [e for (e,) in (await conn.exec_driver_sql("SELECT email FROM contact")).all()]
    secrets = [*emails, "Zebediah", "Quarterfield", "078-05-1120", "415 555 0134",
               "ada.lovelace", "DE89370400440532013000"]  # fmt: skip
    prompts, logs = stub.prompts(), caplog.text
    for secret in secrets:
        assert secret not in prompts, f"{secret!r} reached a prompt"
        assert secret not in history, f"{secret!r} is in the workflow history"
        assert secret not in logs, f"{secret!r} was logged"
    assert "Zebediah" in read_outbox(sink.maildir, campaign_id)[0].full()["Subject"]
