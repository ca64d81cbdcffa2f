"""``tailor bench observability``: what traces and metrics cost, measured off and on in one run.

The campaign bench (``tailor bench campaign``) and the trigger bench (``tailor bench trigger``)
each run twice on fresh stacks: with observability off (no OTLP endpoint, so no tracing; no
worker metrics ports, so no SDK telemetry) and on (traces sampled as in production, by
``--sample`` of them, 10% as in docker-compose.temporal.yml, and exported over OTLP to a loopback
collector in this process that decodes and counts the spans; the worker's and the Temporal
SDK's metrics served and scraped every 15 s). Off runs first: a warm page cache
favours the second run, which is the one expected to be slower; ``--repeat`` alternates more
pairs and reports medians. The report gives the campaign's emails/s and the trigger path's p95
both ways and their ratios; the goal is under 5%. The trigger rate must be one this machine
sustains (``tailor bench trigger`` finds it): past it, emails are lost and p95 is no figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from rich.console import Console
from rich.table import Table

from tailor.cli.bench import campaign_report
from tailor.cli.bench_trigger import trigger_report
from tailor.cli.processes import free_port

SCRAPE_EVERY_S = 15.0
_OFF = {"OTEL_EXPORTER_OTLP_ENDPOINT": None, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": None,
        "TAILOR_WORKER_METRICS_PORT": "0"}  # fmt: skip


class SpanCollector:
    """A loopback OTLP/HTTP trace receiver that counts what it is sent; with ``keep``, it also
    keeps each export (its path and request) for a test to read."""

    def __init__(self, *, keep: bool = False) -> None:
        self.spans = 0
        self.requests = 0
        self.bytes = 0
        self.exports: list[tuple[str, ExportTraceServiceRequest]] = []
        lock = threading.Lock()
        collector = self

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = ExportTraceServiceRequest.FromString(body)
                spans = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                with lock:
                    collector.spans += spans
                    collector.requests += 1
                    collector.bytes += len(body)
                    if keep:
                        collector.exports.append((self.path, request))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Scraper:
    """Fetches the given /metrics URLs every ``SCRAPE_EVERY_S``, as Prometheus would."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as http:
            while not self._stop.wait(SCRAPE_EVERY_S):
                for url in self.urls:
                    try:
                        if http.get(url).status_code == 200:
                            self.scrapes += 1
                    except httpx.HTTPError:
                        pass  # not up yet, or going down

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    """These variables set (None: unset) for the block; the whole environment restored after
    it, as a bench sets variables of its own (its provider) that the next must not inherit."""
    saved = dict(os.environ)
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _both_ways(
    measure: Callable[[], dict[str, Any]], console: Console, what: str, sample: float,
    repeat: int, observe: str = "both",
) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """``measure`` off, then on, ``repeat`` times over; each on run with what observability
    did. Alternating keeps a drift of the machine (a warming cache, a neighbour) out of the
    difference."""
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for round_ in range(1, repeat + 1):
        console.rule(f"{what} {round_}/{repeat}: observability off")
        with _environment(_OFF):
            runs["off"].append(measure())
        console.rule(f"{what} {round_}/{repeat}: observability on ({_on(sample, observe)})")
        collector = SpanCollector()
        port = free_port()
        scraper = Scraper(
            [f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{port + 1}/metrics"]
            if observe != "traces" else []
        )  # fmt: skip
        on_env: dict[str, str | None] = dict(_OFF)
        if observe != "metrics":
            on_env |= {
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": str(sample),
            }
        if observe != "traces":
            on_env["TAILOR_WORKER_METRICS_PORT"] = str(port)
        try:
            with _environment(on_env):
                scraper.start()
                on = measure()
        finally:
            scraper.stop()
            collector.close()
        on["observability"] = {"spans_exported": collector.spans, "export_requests":
                               collector.requests, "export_mb": round(collector.bytes / 1e6, 2),
                               "scrapes": scraper.scrapes}  # fmt: skip
        runs["on"].append(on)
    return runs


def _on(sample: float, observe: str) -> str:
    traces = f"{sample:.0%} of traces exported"
    return {"both": f"{traces}, metrics scraped", "traces": f"{traces}; metrics off",
            "metrics": "metrics scraped; traces off"}[observe]  # fmt: skip


def _median(values: list[float | None]) -> float | None:
    """None if any run lost emails (its p95 is not a figure)."""
    if not values or any(v is None for v in values):
        return None
    return float(statistics.median(v for v in values if v is not None))


def run_observability_bench(args: argparse.Namespace) -> int:
    console = Console(stderr=args.json, soft_wrap=True)
    campaign_args = argparse.Namespace(**{**vars(args), "baseline_contacts": 1000,
                                          "provider": "sendgrid", "llm_stub": False})  # fmt: skip
    trigger_args = argparse.Namespace(**{**vars(args), "rag": False})
    campaign = _both_ways(
        lambda: campaign_report(campaign_args, console), console, "Campaign", args.sample,
        args.repeat, args.observe,
    )  # fmt: skip
    trigger = _both_ways(
        lambda: trigger_report(trigger_args, console), console, "Trigger", args.sample,
        args.repeat, args.observe,
    )  # fmt: skip
    rates = {way: [r["emails_per_s"] for r in campaign[way]] for way in ("off", "on")}
    p95s = {way: [r["p95_ms"] for r in trigger[way]] for way in ("off", "on")}
    throughput = (_median(rates["off"]) or 0.0, _median(rates["on"]) or 0.0)
    p95 = (_median(p95s["off"]), _median(p95s["on"]))
    report: dict[str, Any] = {
        "contacts": args.contacts,
        "rate": args.rate,
        "seconds": args.seconds,
        "sample": args.sample,
        "observe": args.observe,
        "repeat": args.repeat,
        "campaign_emails_per_s": {"off": throughput[0], "on": throughput[1], "runs": rates},
        # Cost: the share of throughput lost, and the share the p95 grew (medians).
        "campaign_cost": round(1 - throughput[1] / throughput[0], 4),
        "trigger_p95_ms": {"off": p95[0], "on": p95[1], "runs": p95s},
        "trigger_cost": round(p95[1] / p95[0] - 1, 4) if p95[0] and p95[1] else None,
        "campaign_observability": [r["observability"] for r in campaign["on"]],
        "trigger_observability": [r["observability"] for r in trigger["on"]],
        "trigger_arrived": {way: [r["arrived"] for r in trigger[way]] for way in ("off", "on")},
        "trigger_api_p95_ms": {
            way: [r["api_p95_ms"] for r in trigger[way]] for way in ("off", "on")
        },  # fmt: skip
        "events": trigger["on"][0]["events"],
    }
    table = Table(title=f"Observability off and on ({_on(args.sample, args.observe)})")
    for column in ("measure", "off", "on", "cost"):
        table.add_column(column, justify="right")
    table.add_row("campaign emails/s", f"{throughput[0]:,}", f"{throughput[1]:,}",
                  f"{report['campaign_cost']:+.1%}")  # fmt: skip
    cost = report["trigger_cost"]
    table.add_row("trigger p95", f"{p95[0]} ms", f"{p95[1]} ms",
                  "lost emails" if cost is None else f"{cost:+.1%}")  # fmt: skip
    console.print(table)
    spans = report["campaign_observability"][0]["spans_exported"]
    console.print(
        f"On: a campaign exported {spans:,} spans "
        f"({report['campaign_observability'][0]['export_mb']} MB), a trigger run "
        f"{report['trigger_observability'][0]['spans_exported']:,}; medians of "
        f"{args.repeat} alternating runs each way; goal: under 5% each"
    )
    if args.json:
        print(json.dumps(report), flush=True)  # noqa: T201  (the machine-readable last line)
    lost = any(
        n < report["events"] for way in ("off", "on") for n in report["trigger_arrived"][way]
    )
    if lost:
        console.print(
            f"[red]Some trigger runs lost emails: {args.rate} events/s is beyond this machine "
            "(a lower --rate measures the cost; tailor bench trigger finds the limit)[/red]"
        )
    return 1 if lost or any(r["failed"] for r in campaign["on"]) else 0
