"""``tailor rag ingest|eval|bench``: load a tenant's past emails, measure retrieval."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from tailor.cli.processes import StartupError
from tailor.config import Settings

if TYPE_CHECKING:  # torch and Qdrant load only for the rag commands
    from rag.index import ExemplarIndex
    from tailor.personalise.relevance import Writer


def _index(settings: Settings, path: Path | None = None) -> ExemplarIndex:
    from rag.index import ExemplarIndex

    location = path or settings.home / "qdrant"
    try:
        return ExemplarIndex.open(
            url=settings.qdrant_url, path=location, model=settings.embedding_model
        )
    except RuntimeError as exc:  # local mode: the folder is locked by another process
        raise StartupError(
            f"the exemplar store at {location} is in use ({exc}); stop the worker "
            "(or `tailor server`) first, or set TAILOR_QDRANT_URL to a Qdrant server"
        ) from exc


def run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from rag.index import IngestReport, parse_line, read_jsonl
    from tailor.personalise.pii import PiiScanner

    if not args.file.is_file():
        raise StartupError(f"no such file: {args.file}")
    console = Console(stderr=True)
    lines = list(read_jsonl(args.file))
    scanner = PiiScanner()
    report = IngestReport()
    good = []
    with Progress(TextColumn("Reading and anonymising"), BarColumn(), MofNCompleteColumn(),
                  console=console) as progress:  # fmt: skip
        task = progress.add_task("read", total=len(lines))
        for number, line in lines:
            try:
                exemplar, redacted = parse_line(number, line, args.tenant, scanner.redact)
            except ValueError as exc:
                report.bad_lines.append((number, str(exc)))
            else:
                good.append(exemplar)
                report.redacted += int(redacted)
            progress.advance(task)
    index = _index(settings)
    try:
        with Progress(TextColumn("Embedding"), BarColumn(), MofNCompleteColumn(),
                      console=console) as progress:  # fmt: skip
            task = progress.add_task("embed", total=len(good))
            index.add(good, on_batch=lambda n: progress.advance(task, n))
    finally:
        index.close()
    report.ingested = len(good)
    for number, problem in report.bad_lines:
        console.print(f"[yellow]line {number}: {problem} (skipped)[/yellow]")
    console.print(
        f"ingested {report.ingested} emails for tenant {args.tenant} "
        f"({report.redacted} had PII redacted); skipped {len(report.bad_lines)} bad lines"
    )
    return 0


def _writer(settings: Settings) -> Writer:
    """The configured LLM tiers when there are any (the relevance then measures the model);
    else the rules tier."""
    from tailor.personalise.llm import LlmExecutor, build_tiers
    from tailor.personalise.relevance import LlmWriter, RulesWriter

    tiers = build_tiers(settings)
    if not tiers:
        return RulesWriter()
    names = ", ".join(f"{t.name} {t.model}" for t in tiers)
    return LlmWriter(LlmExecutor(tiers, settings.llm_prices), names)


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import tempfile

    from rag.eval import evaluate, load_queries
    from tailor.personalise.relevance import generation_relevance

    console = Console(stderr=args.json)
    queries = load_queries()
    writer = _writer(settings)
    with tempfile.TemporaryDirectory(prefix="tailor-rag-eval-") as tmp:
        index = _index(settings, Path(tmp))  # a scratch store: the corpus only
        try:
            with console.status("Loading the model and the corpus…"):
                index.ensure_corpus()
            with console.status("Running the labelled queries…"):
                result: dict[str, float | int | str] = {**evaluate(index, queries)}
            with Progress(TextColumn(f"Writing emails ({writer.name})"), BarColumn(),
                          MofNCompleteColumn(), console=console) as progress:  # fmt: skip
                task = progress.add_task("write", total=len(queries))
                result |= asyncio.run(generation_relevance(
                    index, queries, writer, on_query=lambda: progress.advance(task)))  # fmt: skip
        finally:
            index.close()
    table = Table(title=f"Retrieval on {result['queries']} labelled queries")
    for column in ("", "recall@5", "MRR"):
        table.add_column(column)
    table.add_row("one-shot", f"{result['recall_at_5_one_shot']:.3f}",
                  f"{result['mrr_one_shot']:.3f}")  # fmt: skip
    table.add_row(
        f"multi-hop ({result['mean_hops']} hops)",
        f"{result['recall_at_5_multi_hop']:.3f}",
        f"{result['mrr_multi_hop']:.3f}",
    )
    console.print(table)
    console.print(f"multi-hop retrieval p95: {result['multi_hop_p95_ms']} ms")
    relevance = Table(title=f"Relevance of generated emails to the brief ({writer.name})")
    relevance.add_column("")
    relevance.add_column("cosine to the brief")
    relevance.add_row("without retrieval", f"{result['relevance_without_retrieval']:.3f}")
    relevance.add_row("with retrieval", f"{result['relevance_with_retrieval']:.3f}")
    console.print(relevance)
    if args.json:
        print(json.dumps(result), flush=True)  # noqa: T201
    return 0


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Search latency on an embedded store of ``--exemplars`` points (the corpus, repeated
    with jitter: the vector maths is the same as with distinct emails)."""
    import tempfile

    import numpy as np

    from rag.corpus import load, load_vectors
    from rag.retriever import ClusterQuery

    console = Console(stderr=args.json)
    corpus = load()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="tailor-rag-bench-") as tmp:
        index = _index(settings, Path(tmp))
        try:
            base = np.array(load_vectors(corpus, settings.embedding_model) or
                            index.embedder.encode([e.text() for e in corpus]))  # fmt: skip
            index.store.ensure(base.shape[1])
            with Progress(TextColumn("Loading"), BarColumn(), MofNCompleteColumn(),
                          console=console) as progress:  # fmt: skip
                task = progress.add_task("load", total=args.exemplars)
                for start in range(0, args.exemplars, 512):
                    n = min(512, args.exemplars - start)
                    picks = [corpus[(start + i) % len(corpus)] for i in range(n)]
                    copies = [
                        replace(e, id=f"{e.id}#{start + i}", tenant_id="bench")
                        for i, e in enumerate(picks)
                    ]
                    noise = rng.normal(0, 0.02, (n, base.shape[1]))
                    jittered = base[[(start + i) % len(corpus) for i in range(n)]] + noise
                    jittered /= np.linalg.norm(jittered, axis=1, keepdims=True)
                    index.store.upsert(copies, [list(map(float, v)) for v in jittered])
                    progress.advance(task, n)
            retriever = index.retriever()
            queries = [ClusterQuery("bench", random.Random(i).choice(
                ["promo", "welcome", "cart_abandonment", "re_engagement"]),
                corpus[i % len(corpus)].category) for i in range(args.queries)]  # fmt: skip
            vectors = index.embedder.encode([q.describe() for q in queries])
            search_ms, embed_ms, multi_ms = [], [], []
            for q, v in zip(queries, vectors, strict=True):
                t = time.perf_counter()
                index.store.search("bench", v, limit=8)
                search_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                index.embedder.encode([q.describe()])
                embed_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                retriever.retrieve(q)
                multi_ms.append((time.perf_counter() - t) * 1000)
        finally:
            index.close()

    def p95(values: list[float]) -> float:
        return round(sorted(values)[int(0.95 * (len(values) - 1))], 2)

    result = {
        "exemplars": args.exemplars,
        "queries": args.queries,
        "search_p95_ms": p95(search_ms),
        "search_median_ms": round(statistics.median(search_ms), 2),
        "query_embedding_p95_ms": p95(embed_ms),
        "query_embedding_median_ms": round(statistics.median(embed_ms), 2),
        "multi_hop_p95_ms": p95(multi_ms),
        "multi_hop_median_ms": round(statistics.median(multi_ms), 2),
    }
    console.print(
        f"{args.exemplars:,} exemplars: search p95 {result['search_p95_ms']} ms "
        f"(median {result['search_median_ms']}), query embedding p95 "
        f"{result['query_embedding_p95_ms']} ms, multi-hop retrieval p95 "
        f"{result['multi_hop_p95_ms']} ms"
    )
    if args.json:
        print(json.dumps(result), flush=True)  # noqa: T201
    return 0
