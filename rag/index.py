"""Opens the exemplar store, keeps the built-in corpus loaded, and ingests a tenant's emails.

In local mode one process owns the Qdrant folder: the worker (the API reaches retrieval
through activities). CLI commands that write to it (``tailor rag ingest``) refuse to run while
a worker holds it, and say so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rag.corpus import SHARED_TENANT, Exemplar, corpus_version, load, load_vectors
from rag.embedder import Embedder
from rag.retriever import ExemplarRetriever
from rag.store import ExemplarStore

log = logging.getLogger(__name__)

REQUIRED = ("subject", "body")
GOALS_ACCEPTED = {"welcome", "cart_abandonment", "re_engagement", "milestone", "promo",
                  "product_launch"}  # fmt: skip


class ExemplarIndex:
    def __init__(self, store: ExemplarStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder

    @classmethod
    def open(cls, *, url: str | None, path: Path, model: str) -> ExemplarIndex:
        return cls(ExemplarStore.open(url=url, path=path), Embedder(model))

    def close(self) -> None:
        self.store.close()

    def ensure_corpus(self) -> int:
        """Load the built-in corpus, or reload it if the store holds another version of it
        (committed embeddings are used when they match the model). Returns how many loaded."""
        corpus = load()
        version = corpus_version()
        self.store.ensure(self.embedder.dimensions)
        current = self.store.count(SHARED_TENANT, corpus=version)
        stored = self.store.count(SHARED_TENANT)
        if current == stored == len(corpus):
            return 0
        if stored:
            log.info("exemplar corpus changed: reloading it")
            self.store.delete_tenant(SHARED_TENANT)
        vectors = load_vectors(corpus, self.embedder.model_name)
        if vectors is None:
            vectors = self.embedder.encode([e.text() for e in corpus])
        self.store.upsert(corpus, vectors, extra={"corpus": version})
        return len(corpus)

    def retriever(self, **options: int) -> ExemplarRetriever:
        return ExemplarRetriever(self.embedder, self.store, **options)

    def add(
        self,
        exemplars: list[Exemplar],
        batch_size: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """Embed and store, a batch at a time; ``on_batch(n)`` after each (progress bars)."""
        self.store.ensure(self.embedder.dimensions)
        for start in range(0, len(exemplars), batch_size):
            batch = exemplars[start : start + batch_size]
            self.store.upsert(batch, self.embedder.encode([e.text() for e in batch]))
            if on_batch is not None:
                on_batch(len(batch))


_shared: dict[tuple[str | None, str, str], ExemplarIndex] = {}


def shared_index(*, url: str | None, path: Path, model: str) -> ExemplarIndex | None:
    """One index per store and process (local mode allows one client per folder). None, with
    the fix logged, when another process holds the local folder: retrieval improves emails,
    so a worker without it still sends."""
    key = (url, str(path.resolve()), model)
    index = _shared.get(key)
    if index is None:
        try:
            index = ExemplarIndex.open(url=url, path=path, model=model)
        except RuntimeError as exc:
            log.error("exemplar store %s is in use by another process (%s): this worker sends "
                      "without retrieval. Run one worker per local store, or set "
                      "TAILOR_QDRANT_URL to a Qdrant server", path, exc)  # fmt: skip
            return None
        _shared[key] = index
    return index


@dataclass
class IngestReport:
    ingested: int = 0
    redacted: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)


def parse_line(
    number: int, line: str, tenant_id: str, redact: Callable[[str], tuple[str, list[str]]]
) -> tuple[Exemplar, bool]:
    """One JSONL line as a tenant exemplar, PII redacted; ValueError names what is wrong."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in REQUIRED if not str(record.get(k, "")).strip()]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    goal = str(record.get("goal", "promo"))
    if goal not in GOALS_ACCEPTED:
        raise ValueError(f"goal {goal!r} is not one of {sorted(GOALS_ACCEPTED)}")
    found = False
    texts = {}
    for key in ("subject", "preheader", "body", "cta"):
        texts[key], entities = redact(str(record.get(key, "")))
        found = found or bool(entities)
    try:
        open_rate = float(record.get("open_rate", 0.0))
        click_rate = float(record.get("click_rate", 0.0))
    except (TypeError, ValueError) as exc:
        raise ValueError("open_rate and click_rate must be numbers") from exc
    exemplar = Exemplar(
        id=str(record.get("id") or f"line-{number}"), tenant_id=tenant_id,
        category=str(record.get("category", "general")), goal=goal,
        tone=str(record.get("tone", "friendly")), angle=str(record.get("angle", "benefit")),
        language=str(record.get("language", "en")), subject=texts["subject"],
        preheader=texts["preheader"], body=texts["body"], cta=texts["cta"],
        open_rate=open_rate, click_rate=click_rate, source="tenant-history",
    )  # fmt: skip
    return exemplar, found


def read_jsonl(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line
