"""Retrieval quality on a labelled query set: recall@5 and MRR, one-shot against multi-hop.

Each query in ``rag/data/eval_queries.jsonl`` is a sentence a marketer might write, labelled
with the category and goal it is about; its relevant exemplars are the corpus emails written for
that category and goal. One-shot embeds the sentence and takes the nearest five. Multi-hop
starts from the same sentence and also knows the campaign's goal and the readers' category,
as a campaign does at send time.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from rag.corpus import Exemplar, load
from rag.index import ExemplarIndex
from rag.retriever import ClusterQuery

QUERIES_PATH = Path(__file__).parent / "data" / "eval_queries.jsonl"
EVAL_TENANT = "eval"


@dataclass(frozen=True)
class LabelledQuery:
    text: str
    category: str
    goal: str


def load_queries(path: Path = QUERIES_PATH) -> list[LabelledQuery]:
    return [LabelledQuery(**json.loads(line)) for line in path.read_text().splitlines() if line]


def _recall(ranked: list[str], relevant: set[str], k: int = 5) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def _reciprocal_rank(ranked: list[str], relevant: set[str]) -> float:
    return next((1 / (i + 1) for i, rid in enumerate(ranked) if rid in relevant), 0.0)


def evaluate(index: ExemplarIndex, queries: list[LabelledQuery]) -> dict[str, float | int]:
    corpus: list[Exemplar] = load()
    retriever = index.retriever(max_exemplars=5, token_budget=10_000)
    one_recall, multi_recall, one_rr, multi_rr, hops, latency = [], [], [], [], [], []
    for q in queries:
        relevant = {e.id for e in corpus if e.category == q.category and e.goal == q.goal}
        query = ClusterQuery(EVAL_TENANT, q.goal, q.category, text=q.text)
        one = [e.id for e in retriever.one_shot(query, limit=5)]
        started = time.perf_counter()
        result = retriever.retrieve(query)
        latency.append((time.perf_counter() - started) * 1000)
        multi = [e.id for e in result.exemplars]
        one_recall.append(_recall(one, relevant))
        multi_recall.append(_recall(multi, relevant))
        one_rr.append(_reciprocal_rank(one, relevant))
        multi_rr.append(_reciprocal_rank(multi, relevant))
        hops.append(len(result.hops))
    latency.sort()
    return {
        "queries": len(queries),
        "recall_at_5_one_shot": round(statistics.mean(one_recall), 4),
        "recall_at_5_multi_hop": round(statistics.mean(multi_recall), 4),
        "mrr_one_shot": round(statistics.mean(one_rr), 4),
        "mrr_multi_hop": round(statistics.mean(multi_rr), 4),
        "mean_hops": round(statistics.mean(hops), 2),
        "multi_hop_p95_ms": round(latency[int(0.95 * (len(latency) - 1))], 1),
    }
