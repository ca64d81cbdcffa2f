"""The README's commands, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tailor.devtools.smtp_sink import read_outbox
from tests.conftest import free_port

pytestmark = [pytest.mark.devserver, pytest.mark.slow]


def _demo(home: Path, ports: list[str], contacts: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tailor.cli.main", "demo", "--exit-when-done", "--json",
         "--contacts", str(contacts), "--home", str(home), *ports],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TAILOR_HOME": str(home)},
    )  # fmt: skip


def test_demo_twice_in_a_row_then_clean_exit(tmp_path: Path) -> None:
    home = tmp_path / "state"
    ports = [
        "--temporal-port", str(free_port()), "--ui-port", str(free_port()),
        "--api-port", str(free_port()), "--smtp-port", str(free_port()),
    ]  # fmt: skip
    summaries = []
    for _ in range(2):
        run = _demo(home, ports, 300)
        assert run.returncode == 0, run.stderr[-3000:]
        summaries.append(json.loads(run.stdout.strip().splitlines()[-1]))
    for summary in summaries:
        assert summary["failed"] == 0 and summary["sent"] > 250
        assert summary["sent"] + summary["suppressed"] == 300
        emails = read_outbox(Path(summary["outbox"]), summary["campaign_id"])
        assert len(emails) == summary["sent"]
        for email in emails:
            assert email.headers["List-Unsubscribe"].startswith("<http")
            assert email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The event stream starts journeys: welcome emails go out at once, purchases end carts.
    first = summaries[0]["journeys"]
    assert first["events"] > 0 and set(first["journeys"]) >= {"welcome", "cart_abandonment"}
    assert first["emails_sent"] >= first["journeys"]["welcome"]
    assert first["ended_by_purchase"] >= 1
    # The second run's triggers reach the journeys still running: signals, not new journeys.
    assert summaries[1]["journeys"]["journeys"]["welcome"] == first["journeys"]["welcome"]
    assert summaries[0]["campaign_id"] != summaries[1]["campaign_id"]
    assert not (home / "processes.json").exists(), "every child process was stopped"


def test_busy_port_is_a_one_line_error_naming_the_flag(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = _demo(
            tmp_path / "s",
            [
                "--api-port",
                str(port),
                "--temporal-port",
                str(free_port()),
                "--ui-port",
                str(free_port()),
            ],
            10,
        )
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert f"port {port}" in last and "--api-port" in last


def test_bad_arguments_exit_nonzero_with_a_message() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tailor.cli.main", "demo", "--contacts", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "--contacts" in run.stderr


def test_bench_trigger_sends_every_event_and_reports_percentiles(tmp_path: Path) -> None:
    ports = [
        "--temporal-port", str(free_port()), "--api-port", str(free_port()),
        "--smtp-port", str(free_port()),
    ]  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "tailor.cli.main", "bench", "trigger", "--rate", "5",
         "--seconds", "3", "--json", *ports],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # the bench's state folder lands here
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["events"] == 5 * 3
    assert report["arrived"] == report["events"] and report["missing"] == 0
    assert report["api_errors"] == 0
    assert 0 < report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"] <= report["max_ms"]
    assert report["max_ms"] < 30_000  # within the grace period
    assert 4 <= report["rate_achieved"] <= 6
    assert report["tier"] == "rules" and report["rag_enabled"] is False
    assert 0 < report["phases"]["sampled"] <= report["events"]
    assert next(iter(report["phases"])).startswith("t0->")  # phases run from the POST on
    assert not list(tmp_path.iterdir()), "the state folder was removed"


def test_bench_campaign_reports_rate_chunk_latency_and_memory(tmp_path: Path) -> None:
    ports = [
        "--temporal-port", str(free_port()), "--ui-port", str(free_port()),
        "--api-port", str(free_port()), "--smtp-port", str(free_port()),
    ]  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "tailor.cli.main", "bench", "campaign", "--contacts", "2000",
         "--json", *ports],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path), "TAILOR_RAG_ENABLED": "false"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["provider"] == "sendgrid"
    assert report["processed"] == 2000 and report["failed"] == 0 and report["sent"] > 1800
    assert report["emails_per_s"] > 0 and report["baseline_emails_per_s"] > 0
    assert report["chunks"] == 4  # 2,000 contacts in chunks of 500
    assert 0 < report["chunk_p50_s"] <= report["chunk_p95_s"]
    assert report["peak_rss_mb_by_process"]["esp-stub"] > 0
    assert report["progress_query_p95_ms"] > 0
    assert not list(tmp_path.iterdir()), "the state folder was removed"


def test_bench_tracking_reports_latency_per_route_and_every_hit_recorded(tmp_path: Path) -> None:
    """Its shape and its counts, not its speed: every request answered as the route should,
    and every one of them a stored hit once the API's recorder has drained."""
    run = subprocess.run(
        [sys.executable, "-m", "tailor.cli.main", "bench", "tracking", "--rate", "40",
         "--seconds", "2", "--contacts", "50", "--json"],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["backend"] == "sqlite" and report["rate"] == 40 and report["sends"] > 40
    assert report["requests"] == 40 * 2 and report["errors"] == 0
    routes = report["routes"]
    assert routes["open"]["requests"] + routes["click"]["requests"] == report["requests"]
    for route in routes.values():
        assert route["requests"] > 10 and route["errors"] == 0
        assert 0 < route["p50_ms"] <= route["p95_ms"] <= route["p99_ms"] <= route["max_ms"]
    assert 30 <= report["rate_achieved"] <= 50
    assert report["hits_requested"] == 40 * 3  # with the second of warm-up
    assert report["hits_recorded"] == report["hits_requested"] == sum(report["hits"].values())
    assert report["hits"]["open_machine"] > 0  # the Apple MPP prefetches among the opens
    assert not list(tmp_path.iterdir()), "the state folder was removed"
