"""The Grafana dashboard (`docs/grafana/genq.json`) is built on genq's metric names:
every series its expressions name is one genq's registry exposes. And what the
registry exposes follows Prometheus naming."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ulid import ULID

from genq.core import Genq
from genq.settings import Settings
from genq.telemetry.metrics import submitted_at

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "genq.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def exposed(tmp_path: Path) -> dict[str, str]:
    """Series names genq's registry can expose -> their family's type."""
    genq = Genq(Settings(data_dir=tmp_path))  # built, not started: nothing is opened
    names: dict[str, str] = {}
    for family in genq.metrics.registry.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.type
    return names


def expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        query = node.get("query")
        if isinstance(query, dict) and isinstance(query.get("query"), str):
            found.append(query["query"])
        return found + [e for v in node.values() for e in expressions(v)]
    if isinstance(node, list):
        return [e for v in node for e in expressions(v)]
    return []


def test_every_metric_the_dashboard_names_exists(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = exposed(tmp_path)
    exprs = expressions(dashboard)
    assert len(exprs) > 20
    used = {m for e in exprs for m in re.findall(r"\bgenq_[a-z0-9_]+", e)}
    assert used and not used - set(names), sorted(used - set(names))
    # and it covers what the brief asks to see
    for family in (
        "genq_jobs_submitted_total",
        "genq_jobs_completed_total",
        "genq_queue_depth",
        "genq_queue_oldest_age_seconds",
        "genq_job_duration_seconds_bucket",
        "genq_webhook_attempts_total",
        "genq_upstream_requests_total",
        "genq_http_request_duration_seconds_bucket",
        "genq_sse_connections",
        "genq_credits_held",
    ):
        assert family in used, family
    # a Prometheus datasource variable, used by every panel
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"


def test_names_follow_prometheus_conventions(tmp_path: Path) -> None:
    for name, kind in exposed(tmp_path).items():
        assert name.startswith("genq_"), name
        if kind == "histogram":
            assert re.search(r"_seconds_(bucket|count|sum)$", name), name
        if kind == "gauge":
            assert not name.endswith("_total"), name


def test_registries_are_per_instance(tmp_path: Path) -> None:
    a, b = Genq(Settings(data_dir=tmp_path / "a")), Genq(Settings(data_dir=tmp_path / "b"))
    assert a.metrics.registry is not b.metrics.registry
    a.metrics.submitted.labels("demo/noop").inc()
    assert (
        a.metrics.registry.get_sample_value("genq_jobs_submitted_total", {"engine": "demo/noop"})
        == 1
    )
    assert (
        b.metrics.registry.get_sample_value("genq_jobs_submitted_total", {"engine": "demo/noop"})
        is None
    )


def test_queue_age_comes_from_the_job_id() -> None:
    made = ULID()
    assert submitted_at(f"job_{made}") == made.milliseconds / 1000
    assert submitted_at("job_short") is None
    assert submitted_at("job_01ARZ!NDEKTSV4RRFFQ69G5FAV") is None
