"""``tailor``: run the demo, the local server, a worker or the API; migrate; benchmark."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from pathlib import Path

from pydantic import ValidationError

from tailor.cli.processes import StartupError
from tailor.config import Settings

# The API's event loop shares the interpreter with the database driver's threads (aiosqlite):
# every hand-over waits for the holder's switch interval, 5 ms by default, which is a quarter of
# the tracking routes' p99 budget. 1 ms keeps the hand-overs off their tail.
SWITCH_INTERVAL_S = 0.001


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        raise SystemExit(
            f"tailor: bad configuration: {field}: {first['msg']} (TAILOR_* env)"
        ) from None


def _add_ports(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--temporal-port", type=int, default=7233)
    parser.add_argument("--ui-port", type=int, default=8233)
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--smtp-port", type=int, default=2525)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailor", description="Durable, AI-personalised email for marketers."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="start everything locally and send a demo campaign")
    demo.add_argument("--contacts", type=_positive, default=1000)
    demo.add_argument(
        "--shoppers", type=int, default=60, help="people whose events drive journeys (0: none)"
    )
    demo.add_argument("--exit-when-done", action="store_true")
    demo.add_argument("--json", action="store_true", help="last line: one JSON summary")
    demo.add_argument("--home", type=Path, default=None, help="state folder (default .tailor)")
    _add_ports(demo)

    server = sub.add_parser("server", help="Temporal dev server + worker + API (+ SMTP sink)")
    server.add_argument("--no-smtp-sink", action="store_true")
    server.add_argument("--home", type=Path, default=None)
    _add_ports(server)

    sub.add_parser("worker", help="run a Tailor worker (same as python worker.py)")
    sub.add_parser("api", help="serve the HTTP API")

    sink = sub.add_parser("smtp-sink", help="run the local SMTP capture server")
    sink.add_argument("--port", type=int, default=None)
    sink.add_argument("--maildir", type=Path, default=None)

    stub = sub.add_parser(
        "llm-stub", help="a loopback server speaking the OpenAI and Anthropic APIs (for trials)"
    )
    stub.add_argument("--port", type=int, default=8089)
    stub.add_argument(
        "--answers",
        choices=["good", "needs-review"],
        default="good",
        help="needs-review: content a person must approve (short, or saying 'cheap'), to try "
        "the review queue",
    )

    esp = sub.add_parser(
        "esp-stub",
        help="a loopback server speaking the SendGrid, Mailgun and Amazon SES APIs (for trials)",
    )
    esp.add_argument("--port", type=int, default=8025)

    rag = sub.add_parser("rag", help="exemplar retrieval: ingest past emails, evaluate, bench")
    rag_sub = rag.add_subparsers(dest="rag_command", required=True)
    ingest = rag_sub.add_parser("ingest", help="load a tenant's past emails (JSONL)")
    ingest.add_argument("file", type=Path)
    ingest.add_argument("--tenant", required=True)
    rag_eval = rag_sub.add_parser("eval", help="recall@5 and MRR, one-shot vs multi-hop")
    rag_eval.add_argument("--json", action="store_true", help="last line: one JSON object")
    rag_bench = rag_sub.add_parser("bench", help="retrieval latency on an embedded store")
    rag_bench.add_argument("--exemplars", type=_positive, default=10_000)
    rag_bench.add_argument("--queries", type=_positive, default=200)
    rag_bench.add_argument("--json", action="store_true", help="last line: one JSON object")

    from tailor.cli import accounts, consent

    accounts.add_parsers(sub)
    consent.add_parsers(sub)
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply Alembic migrations")

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    campaign = bench_sub.add_parser("campaign", help="a batch campaign into the SMTP sink")
    campaign.add_argument("--contacts", type=_positive, default=100_000)
    campaign.add_argument("--baseline-contacts", type=_positive, default=None)
    campaign.add_argument("--json", action="store_true")
    campaign.add_argument("--keep", action="store_true", help="keep the bench state folder")
    campaign.add_argument(
        "--provider",
        choices=["sendgrid", "smtp"],
        default="sendgrid",
        help="deliver to a loopback SendGrid-format stub (default) or the SMTP capture server",
    )
    campaign.add_argument(
        "--llm-stub",
        action="store_true",
        help="generate with the LLM tier against a loopback OpenAI-compatible stub",
    )
    _add_ports(campaign)
    trigger = bench_sub.add_parser(
        "trigger", help="event -> email latency of a zero-delay journey (rules tier)"
    )
    trigger.add_argument("--rate", type=_positive, default=50, help="events per second")
    trigger.add_argument("--seconds", type=_positive, default=60)
    trigger.add_argument("--json", action="store_true", help="last line: one JSON object")
    trigger.add_argument("--keep", action="store_true", help="keep the bench state folder")
    trigger.add_argument(
        "--rag", action="store_true", help="retrieve exemplars on the send path (default off)"
    )
    _add_ports(trigger)
    observed = bench_sub.add_parser(
        "observability",
        help="campaign throughput and trigger p95 with traces and metrics off, then on",
    )
    observed.add_argument("--contacts", type=_positive, default=100_000)
    observed.add_argument(
        "--rate", type=_positive, default=10,
        help="trigger events per second (one the machine sustains: tailor bench trigger)",
    )  # fmt: skip
    observed.add_argument("--repeat", type=_positive, default=1, help="off/on pairs (medians)")
    observed.add_argument("--seconds", type=_positive, default=60, help="of trigger events")
    observed.add_argument(
        "--sample", type=_share, default=0.1,
        help="share of traces kept when on (OTEL_TRACES_SAMPLER_ARG; compose's default 0.1)",
    )  # fmt: skip
    observed.add_argument(
        "--observe", choices=("both", "traces", "metrics"), default="both",
        help="what is on in the on runs (one alone says which costs what)",
    )  # fmt: skip
    observed.add_argument("--json", action="store_true", help="last line: one JSON object")
    observed.add_argument("--keep", action="store_true", help="keep the bench state folders")
    _add_ports(observed)
    hooks = bench_sub.add_parser(
        "webhooks", help="signed SendGrid event batches into the API: events/s, nothing lost"
    )
    hooks.add_argument("--seconds", type=_positive, default=10)
    hooks.add_argument("--batch", type=_positive, default=1000, help="events per request")
    hooks.add_argument("--concurrency", type=_positive, default=4, help="clients posting at once")
    hooks.add_argument("--contacts", type=_positive, default=2000, help="sends the events name")
    hooks.add_argument(
        "--database-url", default=None, help="a PostgreSQL URL; default: a fresh SQLite file"
    )
    hooks.add_argument("--json", action="store_true", help="last line: one JSON object")
    hooks.add_argument("--keep", action="store_true", help="keep the bench state folder")
    tracking = bench_sub.add_parser(
        "tracking", help="open pixel and click redirect at a fixed rate: latency, hits recorded"
    )
    tracking.add_argument("--rate", type=_positive, default=500, help="requests per second")
    tracking.add_argument("--seconds", type=_positive, default=10)
    tracking.add_argument(
        "--click-share", type=_share, default=0.5, help="share of redirects (the rest: pixels)"
    )
    tracking.add_argument("--contacts", type=_positive, default=2000, help="emails to open")
    tracking.add_argument(
        "--connections", type=_positive, default=256, help="requests in flight at most"
    )
    tracking.add_argument(
        "--database-url", default=None, help="a PostgreSQL URL; default: a fresh SQLite file"
    )
    tracking.add_argument("--json", action="store_true", help="last line: one JSON object")
    tracking.add_argument("--keep", action="store_true", help="keep the bench state folder")
    reports = bench_sub.add_parser(
        "reports", help="a campaign report over 1M sends and 3M events, timed through the API"
    )
    reports.add_argument("--sends", type=_positive, default=1_000_000, help="the campaign's emails")
    reports.add_argument(
        "--events", type=_positive, default=3_000_000, help="raw events (at least 2 x --sends)"
    )
    reports.add_argument(
        "--requests", type=_positive, default=50, help="timed requests per report variant"
    )
    reports.add_argument(
        "--other-campaigns", type=int, default=250, help="other campaigns' rollups around it"
    )
    reports.add_argument(
        "--database-url", default=None, help="a PostgreSQL URL; default: a fresh SQLite file"
    )
    reports.add_argument("--json", action="store_true", help="last line: one JSON object")
    reports.add_argument("--keep", action="store_true", help="keep the bench state folder")
    return parser


def _serve_api(settings: Settings) -> None:
    import uvicorn

    from api.main import create_app
    from tailor.observability.tracing import start_from_environment

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    start_from_environment("tailor-api")
    uvicorn.run(
        create_app(settings, tracking_recorder="process"),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
    )


def _run_sink(settings: Settings, port: int | None, maildir: Path | None) -> None:
    from tailor.devtools.smtp_sink import start_sink

    target = maildir or settings.outbox_dir
    controller, _ = start_sink(target, settings.smtp_host, port or settings.smtp_port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("tailor.devtools.smtp_sink").info("capturing into %s", target)
    stop.wait()
    controller.stop()


def _run_llm_stub(port: int, answers: str) -> None:
    from tailor.devtools.llm_stub import needs_review_answer, running_stub

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with running_stub(port) as stub:
        if answers == "needs-review":
            stub.openai.answer = stub.anthropic.answer = needs_review_answer
        logging.getLogger("tailor.llm_stub").info(
            "serving on %s; point Tailor at it with TAILOR_LLM_BASE_URL=%s/v1 "
            "(and TAILOR_ANTHROPIC_BASE_URL=%s TAILOR_ANTHROPIC_API_KEY=stub)",
            stub.url,
            stub.url,
            stub.url,
        )
        stop.wait()


def _run_esp_stub(port: int) -> None:
    from tailor.devtools.esp_stub import (
        STUB_MAILGUN_DOMAIN,
        STUB_MAILGUN_KEY,
        STUB_SENDGRID_KEY,
        STUB_SES_ACCESS_KEY,
        STUB_SES_SECRET,
        serve,
    )

    def ready(stub: object) -> None:
        url = getattr(stub, "url", "")
        logging.getLogger("tailor.esp_stub").info(
            "serving SendGrid, Mailgun and SES on %s; point Tailor at it with "
            "TAILOR_PROVIDERS='[\"sendgrid\",\"mailgun\",\"ses\"]' "
            "TAILOR_SENDGRID_BASE_URL=%s TAILOR_SENDGRID_API_KEY=%s "
            "TAILOR_MAILGUN_BASE_URL=%s TAILOR_MAILGUN_API_KEY=%s TAILOR_MAILGUN_DOMAIN=%s "
            "TAILOR_SES_ENDPOINT_URL=%s TAILOR_SES_ACCESS_KEY_ID=%s "
            "TAILOR_SES_SECRET_ACCESS_KEY=%s",
            url, url, STUB_SENDGRID_KEY, url, STUB_MAILGUN_KEY, STUB_MAILGUN_DOMAIN, url,
            STUB_SES_ACCESS_KEY, STUB_SES_SECRET,
        )  # fmt: skip

    signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C, as the process group does
    serve(port, on_ready=ready)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in (
        "httpx",
        "alembic",
        "temporalio.activity",
        "sentence_transformers",
        "presidio-analyzer",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "demo":
            from tailor.cli.demo import run_demo

            sys.exit(run_demo(args))
        if args.command == "server":
            from tailor.cli.demo import run_server

            sys.exit(run_server(args))
        if args.command == "worker":
            import worker

            worker.main()
        elif args.command == "api":
            _serve_api(_settings())
        elif args.command == "smtp-sink":
            _run_sink(_settings(), args.port, args.maildir)
        elif args.command == "llm-stub":
            _run_llm_stub(args.port, args.answers)
        elif args.command == "esp-stub":
            _run_esp_stub(args.port)
        elif args.command == "db":
            from tailor.db import migrate

            settings = _settings()
            asyncio.run(migrate(settings.resolved_database_url))
        elif args.command in ("tenant", "key"):
            from tailor.cli import accounts

            sys.exit(accounts.run(args, _settings()))
        elif args.command == "consent":
            from tailor.cli import consent

            sys.exit(consent.run(args, _settings()))
        elif args.command == "rag":
            from tailor.cli import rag as rag_cli

            runner = {"ingest": rag_cli.run_ingest, "eval": rag_cli.run_eval,
                      "bench": rag_cli.run_bench}[args.rag_command]  # fmt: skip
            sys.exit(runner(args, _settings()))
        elif args.command == "bench" and args.bench_command == "trigger":
            from tailor.cli.bench_trigger import run_trigger_bench

            sys.exit(run_trigger_bench(args))
        elif args.command == "bench" and args.bench_command == "observability":
            from tailor.cli.bench_observability import run_observability_bench

            sys.exit(run_observability_bench(args))
        elif args.command == "bench" and args.bench_command == "tracking":
            from tailor.cli.bench_tracking import run_tracking_bench

            sys.exit(run_tracking_bench(args))
        elif args.command == "bench" and args.bench_command == "webhooks":
            from tailor.cli.bench_webhooks import run_webhooks_bench

            sys.exit(run_webhooks_bench(args))
        elif args.command == "bench" and args.bench_command == "reports":
            from tailor.cli.bench_reports import run_reports_bench

            sys.exit(run_reports_bench(args))
        elif args.command == "bench":
            from tailor.cli.bench import run_campaign_bench

            sys.exit(run_campaign_bench(args))
    except StartupError as exc:
        print(f"tailor: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
