"""Dashboards and alerts as code: every query names a metric Tailor (or the Temporal SDK) really
exports, the rule files pass ``promtool check`` and their unit tests, and compose provisions
what is in the repository.

``promtool`` comes from Debian's ``prometheus`` package (``.ci/run`` installs it); without it
these checks are skipped on a developer's machine and fail in CI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.core import Metric

from api.routes.metrics import _FromTheDatabase
from tailor.observability.metrics import REGISTRY, SDK_METRICS

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARDS = {"ops", "marketing", "ml", "cost", "compliance"}
# A word that is a metric: what PromQL functions, keywords and label names are not.
_NAME = re.compile(r"\b((?:tailor|temporal)_[a-z0-9_]+|up)\b(?!\s*\()")


def _exported() -> set[str]:
    """Every series name Tailor's processes serve."""
    families: list[Metric] = list(REGISTRY.collect())
    families += list(_FromTheDatabase({"t": {"sent": 1}}, [("t", None, 0.0)], 1.0).collect())
    names = {sample.name for family in families for sample in family.samples}
    # Histograms without observations still expose their _bucket/_sum/_count.
    names |= {f"{f.name}{suffix}" for f in families if f.type == "histogram"
              for suffix in ("_bucket", "_sum", "_count")}  # fmt: skip
    names |= {f"{f.name}_total" for f in families if f.type == "counter"}
    names |= {f.name for f in families if f.type == "gauge"}
    return names | set(SDK_METRICS) | {"up"}


def _metrics_in(expr: str) -> set[str]:
    without_selectors = re.sub(r"\{[^}]*\}", "", expr)  # label values are not metrics
    without_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_selectors)
    return set(_NAME.findall(without_groupings))


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p.get("type") != "row"]


def test_five_dashboards_whose_every_query_reads_an_exported_metric() -> None:
    boards = {
        p.stem: json.loads(p.read_text()) for p in (DEPLOY / "grafana/dashboards").glob("*.json")
    }
    assert set(boards) == DASHBOARDS
    exported = _exported()
    unknown: list[str] = []
    for name, board in boards.items():
        assert board["uid"] == f"tailor-{name}" and _panels(board)
        for panel in _panels(board):
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            for target in panel["targets"]:
                used = _metrics_in(target["expr"])
                assert used, f"{name}: {panel['title']}: no metric in {target['expr']}"
                unknown += [f"{name}: {panel['title']}: {m}" for m in used - exported]
    assert not unknown, "\n".join(unknown)


def test_every_alert_reads_an_exported_metric() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    exported = _exported()
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in alerts}
    # What the operators asked to be paged or ticketed on.
    assert {
        "LlmSpendOver80PercentOfBudget", "LlmBudgetExhausted", "LlmTierFailing",
        "LlmCascadeFailure", "ProviderCircuitOpen", "ComplaintRateHigh", "BounceRateHigh",
        "PersonalisationSlow", "WorkerDown", "ActivityScheduleToStartHigh",
    } <= names  # fmt: skip
    for rule in alerts:
        used = _metrics_in(rule["expr"])
        assert used and used <= exported, f"{rule['alert']}: {used - exported}"
        assert rule["labels"]["severity"] in ("page", "ticket")


def test_the_metric_name_reader_sees_through_promql() -> None:
    expr = 'sum by (tenant) (rate(tailor_emails_total{outcome="sent", tier=~"x_y"}[5m])) / up'
    assert _metrics_in(expr) == {"tailor_emails_total", "up"}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool not installed: apt-get install -y prometheus")
        pytest.skip("promtool not installed (Debian's prometheus package)")
    return found


def test_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = _promtool()
    folder = DEPLOY / "prometheus"
    checked = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=folder,
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=folder,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_scrape_config_passes_promtool(tmp_path: Path) -> None:
    promtool = _promtool()
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    key = tmp_path / "platform-key"
    key.write_text("tlr_example\n")
    for job in config["scrape_configs"]:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(key)
    config["rule_files"] = [str(DEPLOY / "prometheus/alerts.yml")]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    checked = subprocess.run([promtool, "check", "config", str(copy)], capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"tailor-api", "tailor-worker", "temporal-sdk"} <= jobs


def test_compose_provisions_prometheus_and_grafana_from_the_repository() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.temporal.yml").read_text())
    services = compose["services"]
    mounts = {m.split(":")[0] for s in ("prometheus", "grafana") for m in services[s]["volumes"]}
    assert {"./deploy/prometheus", "./deploy/grafana/provisioning",
            "./deploy/grafana/dashboards"} <= mounts  # fmt: skip
    for mount in mounts:
        if mount.startswith("./"):
            assert (ROOT / mount).is_dir(), mount
    assert services["worker"]["environment"]["TAILOR_METRICS_HOST"] == "0.0.0.0"
    # Traces: the API and the workers export to Jaeger's OTLP/HTTP port unless told otherwise;
    # its UI, like every operator's page, is on the loopback interface only.
    for service in ("api", "worker"):
        endpoint = services[service]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert endpoint == "${OTEL_EXPORTER_OTLP_ENDPOINT:-http://jaeger:4318}"
    assert services["jaeger"]["ports"] == ["127.0.0.1:16686:16686"]
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/tailor.yml").read_text())[
        "providers"
    ][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
