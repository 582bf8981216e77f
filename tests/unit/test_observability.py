"""The Grafana dashboard and the alert rules of charts/modelfleet/dashboards/: promtool accepts
them, and every metric, label and reason they name is one the operator really exports, so a
renamed metric or reason fails here instead of silently emptying a panel or an alert."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from modelfleet import metrics
from modelfleet.conditions import STALLED_REASONS, Reason
from tests.support.chart import CHART
from tests.support.cluster import tool_path

pytestmark = pytest.mark.unit

DASHBOARD_PATH = CHART / "dashboards/modelfleet.json"
RULES_PATH = CHART / "dashboards/rules.yaml"
DASHBOARD: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
RULES: dict[str, Any] = yaml.safe_load(RULES_PATH.read_text())

# Grafana's variables, replaced by what Grafana would put there, so promtool can parse the query.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$job": ".*"}
# Labels every scraped series carries, and the histogram bucket label.
TARGET_LABELS = {"job", "instance", "le"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


# -- what the operator exports ---------------------------------------------------------------
def exported_metrics() -> dict[str, set[str]]:
    """Series name -> label names, for every collector of operator/modelfleet/metrics.py."""
    series: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, labels = value._name, set(value._labelnames)  # no public accessor
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        for suffix in suffixes.get(str(value._type), [""]):
            series[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    # The custom collector: its label names show once it holds a Model.
    conditions = metrics.ModelConditions()
    conditions.set("ns/model", "True", "Ready")
    for family in conditions.collect():
        series[family.name] = {label for s in family.samples for label in s.labels}
    return series


EXPORTED = exported_metrics()


def test_the_operator_exports_the_documented_metrics() -> None:
    """The list this file checks against is not empty or partial by accident."""
    assert {
        "modelfleet_reconciles_total",
        "modelfleet_reconcile_duration_seconds_bucket",
        "modelfleet_api_requests_total",
        "modelfleet_api_errors_total",
        "modelfleet_models",
        "modelfleet_download_bytes_total",
        "modelfleet_download_duration_seconds_bucket",
        "modelfleet_download_failures_total",
        "modelfleet_rollout_duration_seconds_bucket",
        "modelfleet_finetune_runs_total",
    } <= set(EXPORTED)
    assert EXPORTED["modelfleet_models"] == {"ready", "reason"}
    assert EXPORTED["modelfleet_reconciles_total"] == {"kind", "result"}


# -- reading PromQL --------------------------------------------------------------------------
_SELECTOR = re.compile(r"\b(modelfleet_[a-z0-9_]+|up)\b\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def selectors(expr: str) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """(metric, [(label, operator, value)]) of each series selector of ``expr``."""
    for match in _SELECTOR.finditer(expr):
        yield match.group(1), _MATCHER.findall(match.group(2) or "")


def grouping_labels(expr: str) -> set[str]:
    return {
        label.strip() for group in _GROUPING.findall(expr) for label in group.split(",") if label
    }


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title/refId, expression with Grafana's variables filled in) of every query."""
    found = []
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((f"{panel['title']}/{target['refId']}", expr))
    return found


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in RULES["groups"] for rule in group["rules"]]


EXPRESSIONS = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()] + dashboard_targets()


def promtool_check_rules(
    rules: dict[str, Any], directory: Path
) -> subprocess.CompletedProcess[str]:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run(
        [tool_path("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


# -- promtool --------------------------------------------------------------------------------
def test_promtool_accepts_the_rule_file() -> None:
    result = subprocess.run(
        [tool_path("promtool"), "check", "rules", str(RULES_PATH)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each query becomes a recording rule, which promtool parses like Prometheus would."""
    targets = dashboard_targets()
    for where, expr in targets:
        assert "$" not in expr, f"{where}: a Grafana variable this test does not know: {expr}"
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": expr}
                    for index, (_, expr) in enumerate(targets)
                ],
            }
        ]
    }
    result = promtool_check_rules(rules, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(targets)} rules found" in result.stdout


def test_promtool_check_fails_on_a_broken_query(tmp_path: Path) -> None:
    """The check above can fail: a query with an unbalanced parenthesis is refused."""
    broken = {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(rate(up[5m])"}]}]}
    assert promtool_check_rules(broken, tmp_path).returncode != 0


# -- names -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("where", "expr"), EXPRESSIONS, ids=[w for w, _ in EXPRESSIONS])
def test_every_metric_label_and_reason_exists(where: str, expr: str) -> None:
    found = list(selectors(expr))
    assert found, f"{where} names no metric: {expr}"
    labels_in_scope = set(TARGET_LABELS)
    for metric, matchers in found:
        if metric == "up":
            continue
        assert metric in EXPORTED, f"{where}: {metric} is not exported by modelfleet.metrics"
        labels_in_scope |= EXPORTED[metric]
        for label, operator, value in matchers:
            assert label in EXPORTED[metric] | TARGET_LABELS, f"{where}: {metric} has no {label}"
            if label == "reason":
                values = value.split("|") if operator in ("=~", "!~") else [value]
                unknown = set(values) - {r.value for r in Reason}
                assert not unknown, f"{where}: no such reason {unknown}"
    unknown_groups = grouping_labels(expr) - labels_in_scope
    assert not unknown_groups, f"{where}: grouped by labels its metrics lack: {unknown_groups}"


def test_a_renamed_metric_would_fail() -> None:
    """The name check reads real names: a metric the operator does not export is caught."""
    ((metric, _),) = selectors('rate(modelfleet_reconcile_total{result="error"}[5m])')
    assert metric not in EXPORTED


def test_the_dashboard_shows_every_metric() -> None:
    shown = {metric for _, expr in dashboard_targets() for metric, _ in selectors(expr)}
    families = {
        name.removesuffix("_total")
        .removesuffix("_bucket")
        .removesuffix("_sum")
        .removesuffix("_count")
        for name in EXPORTED
    }
    shown_families = {
        name.removesuffix("_total")
        .removesuffix("_bucket")
        .removesuffix("_sum")
        .removesuffix("_count")
        for name in shown
    }
    assert families <= shown_families, f"metrics without a panel: {families - shown_families}"


def _reasons_of(expr: str) -> set[str]:
    return {
        reason
        for _, matchers in selectors(expr)
        for label, _, value in matchers
        if label == "reason"
        for reason in value.split("|")
    }


def test_stalled_alerts_cover_exactly_the_stalled_reasons() -> None:
    """A reason added to STALLED_REASONS must be added to the alerts (and the dashboard)."""
    rules = {r["alert"]: r for r in alert_rules()}
    stalled = _reasons_of(rules["ModelfleetModelStalled"]["expr"])
    rollout = _reasons_of(rules["ModelfleetRolloutStalled"]["expr"])
    assert rollout == {Reason.ROLLOUT_STALLED.value}
    assert stalled.isdisjoint(rollout)
    assert stalled | rollout == {r.value for r in STALLED_REASONS}
    (stat,) = [p for p in DASHBOARD["panels"] if p["title"] == "Models stalled"]
    assert _reasons_of(stat["targets"][0]["expr"]) == {r.value for r in STALLED_REASONS}


# -- the alerts ------------------------------------------------------------------------------
def test_the_alerts_the_issue_asks_for() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert set(rules) == {
        "ModelfleetModelStalled",
        "ModelfleetRolloutStalled",
        "ModelfleetDownloadFailing",
        "ModelfleetOperatorDown",
        "ModelfleetReconcileErrorsHigh",
    }
    assert rules["ModelfleetModelStalled"]["for"] == "15m"
    assert 'ready="False"' in rules["ModelfleetModelStalled"]["expr"]
    assert "modelfleet_download_failures_total" in rules["ModelfleetDownloadFailing"]["expr"]
    assert rules["ModelfleetOperatorDown"]["expr"].startswith('absent(up{job=~".*modelfleet.*"}')
    assert rules["ModelfleetOperatorDown"]["labels"]["severity"] == "critical"
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


# -- the dashboard ---------------------------------------------------------------------------
_GRID = {
    "type": "object",
    "required": ["h", "w", "x", "y"],
    "properties": {
        "h": {"type": "integer", "minimum": 1},
        "w": {"type": "integer", "minimum": 1, "maximum": 24},
        "x": {"type": "integer", "minimum": 0, "maximum": 23},
        "y": {"type": "integer", "minimum": 0},
    },
}
DASHBOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title", "uid", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "tags": {"type": "array", "items": {"type": "string"}},
        "time": {"type": "object", "required": ["from", "to"]},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "contains": {
                        "type": "object",
                        "required": ["name", "type", "query"],
                        "properties": {
                            "name": {"const": "datasource"},
                            "type": {"const": "datasource"},
                            "query": {"const": "prometheus"},
                        },
                    },
                    "items": {"type": "object", "required": ["name", "type"]},
                }
            },
        },
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos"],
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "title": {"type": "string", "minLength": 1},
                    "gridPos": _GRID,
                    "type": {"enum": ["row", "timeseries", "stat", "bargauge", "table"]},
                },
                "if": {"properties": {"type": {"const": "row"}}},
                "then": {"required": ["collapsed", "panels"]},
                "else": {
                    "required": ["datasource", "targets", "fieldConfig", "description"],
                    "properties": {
                        "datasource": {"const": DATASOURCE},
                        "targets": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["refId", "expr", "datasource"],
                                "properties": {
                                    "refId": {"type": "string", "pattern": "^[A-Z]$"},
                                    "expr": {"type": "string", "minLength": 1},
                                    "datasource": {"const": DATASOURCE},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_the_dashboard_matches_its_schema() -> None:
    jsonschema.validate(DASHBOARD, DASHBOARD_SCHEMA)


def test_the_schema_check_can_fail() -> None:
    """A hard-coded data source or an old schemaVersion is refused."""
    pinned = json.loads(json.dumps(DASHBOARD))
    pinned["panels"][1]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(pinned, DASHBOARD_SCHEMA)
    old = dict(DASHBOARD, schemaVersion=27)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(old, DASHBOARD_SCHEMA)


def test_panel_ids_and_ref_ids_are_unique() -> None:
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)), ids
    for panel in DASHBOARD["panels"]:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_fit_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_the_dashboard_covers_what_the_issue_lists() -> None:
    titles = " / ".join(p["title"].lower() for p in DASHBOARD["panels"])
    for topic in (
        "reconciles",
        "error",
        "latency p50 / p95",
        "api requests",
        "api errors",
        "ready reason",
        "download throughput",
        "download duration",
        "download failures by reason",
        "rollout duration",
        "fine-tune runs",
    ):
        assert topic in titles, topic
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["job"]["datasource"] == DATASOURCE
