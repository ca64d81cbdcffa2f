"""Exemplar retrieval with real embeddings (all-MiniLM-L6-v2, offline) and real qdrant-client:
tenant isolation, multi-hop gaps, ingest of a tenant's history, and the eval command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from rag.corpus import SHARED_TENANT, Exemplar, load, load_vectors
from rag.embedder import DEFAULT_MODEL, Embedder
from rag.eval import load_queries
from rag.index import ExemplarIndex, parse_line
from rag.retriever import ClusterQuery
from rag.store import ExemplarStore
from tailor.config import Settings
from tailor.devtools.llm_stub import StubLlm
from tailor.personalise.llm import LlmExecutor, build_tiers
from tailor.personalise.pii import PiiScanner
from tailor.personalise.relevance import LlmWriter, RulesWriter, generation_relevance
from tests.conftest import llm_settings

STORES = ["local", "local-qdrant-filter"]
if os.environ.get("TAILOR_QDRANT_URL"):
    STORES.append("server")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(params=STORES)
def index(request: pytest.FixtureRequest, embedder: Embedder) -> Iterator[ExemplarIndex]:
    if request.param == "server":
        client = QdrantClient(url=os.environ["TAILOR_QDRANT_URL"])
        if client.collection_exists("tailor_exemplars"):
            client.delete_collection("tailor_exemplars")
    else:
        client = QdrantClient(":memory:")
    store = ExemplarStore(client)
    if request.param == "local-qdrant-filter":
        store._matrix = None  # qdrant-client's own filtered search, as against a server
    index = ExemplarIndex(store, embedder)
    index.ensure_corpus()
    yield index
    index.close()


def _secret(tenant: str) -> Exemplar:
    corpus = load()
    return replace(
        corpus[0], id="acme-secret-1", tenant_id=tenant,
        subject="Acme private launch: the Moonboot", source="tenant-history",
    )  # fmt: skip


def test_the_committed_embeddings_are_those_of_the_corpus(embedder: Embedder) -> None:
    corpus = load()
    assert len(corpus) >= 300 and {e.tenant_id for e in corpus} == {SHARED_TENANT}
    vectors = load_vectors(corpus, DEFAULT_MODEL)
    assert vectors is not None and len(vectors) == len(corpus)
    fresh = embedder.encode([corpus[5].text()])[0]
    assert sum(a * b for a, b in zip(fresh, vectors[5], strict=True)) > 0.999


def test_a_changed_corpus_replaces_the_old_one_in_an_existing_store(
    index: ExemplarIndex,
) -> None:
    corpus = load()
    assert index.ensure_corpus() == 0, "already loaded: nothing to do"
    old = replace(corpus[0], id="ex-retired-1", subject="A retired exemplar")
    index.store.upsert([old], index.embedder.encode([old.text()]), extra={"corpus": "old"})
    index.add([_secret("acme")])
    assert index.ensure_corpus() == len(corpus), "a different set: reloaded"
    assert index.store.count(SHARED_TENANT) == len(corpus)
    vector = index.embedder.encode(["A retired exemplar"])[0]
    assert "ex-retired-1" not in [h.exemplar.id for h in index.store.search("x", vector, limit=20)]
    assert index.store.count("acme") == 1, "tenants' own exemplars stay"


def test_a_tenant_never_retrieves_another_tenants_exemplars(index: ExemplarIndex) -> None:
    index.add([_secret("acme")])
    vector = index.embedder.encode(["Acme private launch: the Moonboot"])[0]
    own = index.store.search("acme", vector, limit=3)
    assert own[0].exemplar.id == "acme-secret-1"
    for other in ("globex", "acme2"):
        hits = index.store.search(other, vector, limit=50)
        assert hits and all(h.exemplar.tenant_id == SHARED_TENANT for h in hits)
        retrieval = index.retriever().retrieve(
            ClusterQuery(other, "product_launch", "fashion", text="Acme private launch Moonboot")
        )
        assert "acme-secret-1" not in [e.id for e in retrieval.exemplars]
    with pytest.raises(ValueError):
        index.store.search(SHARED_TENANT, vector, limit=3)


def test_multi_hop_fills_the_gaps_one_shot_leaves(index: ExemplarIndex) -> None:
    query = ClusterQuery("acme", "cart_abandonment", "running", tier="high")
    retriever = index.retriever()
    one_shot = retriever.one_shot(query, limit=5)
    assert not all(e.category == "running" for e in one_shot), "the baseline drifts"
    result = retriever.retrieve(query)
    assert 2 <= len(result.hops) <= 4
    assert any(h.reason.startswith("category fit") for h in result.hops)
    assert all(e.goal == "cart_abandonment" for e in result.exemplars)
    assert any(e.category == "running" for e in result.exemplars[:2])
    assert len({e.id for e in result.exemplars}) == len(result.exemplars), "deduplicated"
    tokens = sum(len(e.text()) // 4 + 1 for e in result.exemplars)
    assert tokens <= 700, "trimmed to the token budget"
    why = result.explain()
    assert why["exemplars"] == [e.id for e in result.exemplars] and why["hops"]


def test_a_formal_brand_gets_formal_exemplars(index: ExemplarIndex) -> None:
    result = index.retriever().retrieve(ClusterQuery("acme", "milestone", "books", tone="formal"))
    assert any(e.tone == "formal" for e in result.exemplars)


def test_ingest_lines_are_validated_and_anonymised() -> None:
    scanner = PiiScanner()
    good = json.dumps({"subject": "Back in stock", "body": "Hi Ada, call 212-555-0199 or write "
                       "to ada@example.com. Your boots are back.", "goal": "promo",
                       "category": "fashion", "click_rate": 0.05})  # fmt: skip
    exemplar, redacted = parse_line(3, good, "acme", scanner.redact)
    assert redacted and "ada@example.com" not in exemplar.body and "[redacted]" in exemplar.body
    assert exemplar.tenant_id == "acme" and exemplar.source == "tenant-history"
    for line, problem in [
        ("{not json", "not JSON"),
        (json.dumps({"subject": "x"}), "missing body"),
        (json.dumps({"subject": "x", "body": "y", "goal": "spam"}), "goal 'spam'"),
        (json.dumps({"subject": "x", "body": "y", "click_rate": "high"}), "must be numbers"),
    ]:
        with pytest.raises(ValueError, match=problem):
            parse_line(1, line, "acme", scanner.redact)


def _tailor(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TAILOR_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "tailor.cli.main", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def test_rag_ingest_reports_bad_lines_and_keeps_the_good_ones(
    tmp_path: Path, embedder: Embedder
) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text(
        "\n".join(
            [
                json.dumps(
                    {
                        "id": "h1",
                        "subject": "Moonboot restock",
                        "body": "The Moonboot is back in every size.",
                        "goal": "promo",
                        "category": "fashion",
                    }
                ),
                "{broken",
                json.dumps({"subject": "No body"}),
                json.dumps(
                    {
                        "id": "h2",
                        "subject": "Welcome to Acme",
                        "body": "Thanks for joining Acme, write to jo@acmeshop.com with questions.",
                        "goal": "welcome",
                    }
                ),
            ]
        )
        + "\n"  # fmt: skip
    )
    run = _tailor("rag", "ingest", str(history), "--tenant", "acme", home=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "line 2: not JSON" in run.stderr and "line 3: missing body" in run.stderr
    assert "ingested 2 emails for tenant acme (1 had PII redacted)" in run.stderr

    store = ExemplarStore.open(url=None, path=tmp_path / "qdrant")
    try:
        assert store.count("acme") == 2
        vector = embedder.encode(["Moonboot restock"])[0]
        assert store.search("acme", vector, limit=1)[0].exemplar.id == "h1"
        assert all(h.exemplar.tenant_id != "acme" for h in store.search("other", vector, limit=20))
        welcome = [h.exemplar for h in store.search("acme", vector, limit=5, goal="welcome")]
        assert "jo@acmeshop.com" not in welcome[0].body
    finally:
        store.close()

    missing = _tailor("rag", "ingest", str(tmp_path / "nope.jsonl"), "--tenant", "a", home=tmp_path)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_rag_eval_prints_the_table_and_a_json_summary(tmp_path: Path) -> None:
    run = _tailor("rag", "eval", "--json", home=tmp_path)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["queries"] >= 60
    assert result["recall_at_5_multi_hop"] > result["recall_at_5_one_shot"]
    assert 0 < result["mrr_multi_hop"] <= 1
    assert "recall@5" in run.stderr and "one-shot" in run.stderr
    # No model configured: the rules tier writes, with and without the exemplars.
    assert result["relevance_writer"] == "rules tier"
    assert result["relevance_with_retrieval"] > 0 and result["relevance_without_retrieval"] > 0
    assert "with retrieval" in run.stderr


async def test_generation_relevance_feeds_the_writer_the_retrieved_exemplars(
    index: ExemplarIndex, stub: StubLlm
) -> None:
    """Through the real openai client: the email written with retrieval was asked for with
    the retrieved exemplars in its prompt, the one without retrieval with none."""
    queries = [q for q in load_queries() if q.goal == "cart_abandonment"][:2]
    settings = Settings.model_validate(llm_settings(stub))
    writer = LlmWriter(LlmExecutor(build_tiers(settings), {}), "stub")
    result = await generation_relevance(index, queries, writer)

    assert len(stub.requests) == 4  # per query: one without, one with exemplars
    without, with_exemplars = stub.requests[0].body, stub.requests[1].body
    retrieved = index.retriever().retrieve(
        ClusterQuery("eval", queries[0].goal, queries[0].category, text=queries[0].text)
    )
    assert retrieved.exemplars[0].subject in json.dumps(with_exemplars)
    assert retrieved.exemplars[0].subject not in json.dumps(without)
    assert result["relevance_writer"] == "stub"
    for key in ("relevance_without_retrieval", "relevance_with_retrieval"):
        score = result[key]
        assert isinstance(score, float) and -1 <= score <= 1


async def test_the_rules_writer_borrows_the_top_exemplars_call_to_action(
    index: ExemplarIndex,
) -> None:
    query = next(q for q in load_queries() if q.goal == "welcome")
    exemplars = (
        index.retriever()
        .retrieve(ClusterQuery("eval", query.goal, query.category, text=query.text))
        .exemplars
    )
    writer = RulesWriter()
    plain, borrowed = await writer.write(query, []), await writer.write(query, exemplars)
    assert borrowed.cta == exemplars[0].cta != plain.cta
    assert query.category in plain.text()
