"""``tailor bench observability``'s runs: off has neither traces nor metrics; on has what
``--observe`` names, and only that; the environment is the caller's again afterwards."""

from __future__ import annotations

import os
from typing import Any

import pytest
from rich.console import Console

from tailor.cli.bench_observability import _both_ways

KEYS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER_ARG", "TAILOR_WORKER_METRICS_PORT")


@pytest.mark.parametrize(
    ("observe", "traced", "metered"),
    [("both", True, True), ("traces", True, False), ("metrics", False, True)],
)
def test_each_on_run_switches_on_what_it_names_and_the_off_run_nothing(
    observe: str, traced: bool, metered: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.example:4318")
    before = dict(os.environ)
    seen: list[dict[str, str | None]] = []

    def measure() -> dict[str, Any]:
        seen.append({key: os.environ.get(key) for key in KEYS})
        return {}

    runs = _both_ways(measure, Console(quiet=True), "Probe", 0.25, 1, observe)
    off, on = seen
    assert off["OTEL_EXPORTER_OTLP_ENDPOINT"] is None and off["TAILOR_WORKER_METRICS_PORT"] == "0"
    assert (on["OTEL_EXPORTER_OTLP_ENDPOINT"] or "").startswith("http://127.0.0.1:") is traced
    assert (on["OTEL_TRACES_SAMPLER_ARG"] == "0.25") is traced
    assert (on["TAILOR_WORKER_METRICS_PORT"] != "0") is metered
    assert set(runs["on"][0]["observability"]) >= {"spans_exported", "scrapes"}
    assert dict(os.environ) == before
