"""The Grafana dashboard and the alert rules of charts/modelfleet/dashboards/: promtool accepts
them and runs the alerts' unit tests (tests/unit/alerts/), and every metric, label and reason
they name really exists: the operator's in modelfleet.metrics, vLLM's in what the pinned CPU vLLM
exports, with the labels the chart's PodMonitor adds. A renamed metric or reason fails here
instead of silently emptying a panel or an alert, and the engine panels must return series for a
Model scraped the way the PodMonitor scrapes it.

vLLM's metrics come from hack/engine-env.sh's environment, built once per module (about 45 s);
hack/test.sh installs it before the unit tests, so a missing engine fails instead of skipping."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from modelfleet import metrics
from modelfleet.conditions import STALLED_REASONS, Reason
from tests.support.chart import CHART, render_chart
from tests.support.scrape import (
    input_series,
    pod_monitor_target,
    promtool,
    promtool_check_metrics,
    promtool_test_rules,
    returns_series_test,
    series_of,
    vllm_exposition,
)
from tests.unit.test_builders import deployment_for, load_example

pytestmark = pytest.mark.unit

DASHBOARD_PATH = CHART / "dashboards/modelfleet.json"
RULES_PATH = CHART / "dashboards/rules.yaml"
ALERT_TESTS_PATH = Path(__file__).parent / "alerts/rules.test.yaml"
DASHBOARD: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
RULES: dict[str, Any] = yaml.safe_load(RULES_PATH.read_text())

# Grafana's variables, replaced by what Grafana would put there (a multi-value variable's "All"
# is its allValue), so promtool can parse the query.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$job": ".*",
    "$namespace": ".+",
    "$model": ".+",
}
# Labels every series scraped from the operator carries, and the histogram bucket label. vLLM's
# series carry what the chart's PodMonitor gives them instead (the engine_target fixture).
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


# -- what the pinned vLLM exports, and the labels the PodMonitor adds -------------------------
@pytest.fixture(scope="module")
def vllm_metrics(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The /metrics text of the pinned CPU vLLM for the tiny model."""
    text = vllm_exposition(tmp_path_factory.mktemp("vllm"))
    if text is None:
        pytest.fail(
            "the CPU vLLM engine is not installed: run hack/engine-env.sh "
            "(hack/test.sh installs it before the unit tests)"
        )
    return text


@pytest.fixture(scope="module")
def vllm_series(vllm_metrics: str) -> dict[str, set[str]]:
    """Series name -> label names, of vLLM's own series (not the process and Python ones)."""
    series = series_of(vllm_metrics)
    return {name: labels for name, labels in series.items() if name.startswith("vllm:")}


@pytest.fixture(scope="module")
def engine_target(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The labels the chart's PodMonitor gives every series of a serving pod of
    examples/model-tiny.yaml."""
    values = {"engineMetrics": {"podMonitor": {"enabled": True}}}
    objects = render_chart(values, tmp_path_factory.mktemp("chart"))
    (monitor,) = [o for o in objects if o["kind"] == "PodMonitor"]
    model = load_example("model-tiny")
    assert model.metadata.namespace
    pod = deployment_for(model)["spec"]["template"]
    target = pod_monitor_target(monitor, pod, model.metadata.namespace, pod_name="tiny-7f9c-abcde")
    assert target is not None, "the chart's PodMonitor does not scrape a serving pod"
    return target


def test_vllm_exports_what_the_engine_panels_read(vllm_series: dict[str, set[str]]) -> None:
    """The list the names are checked against is vLLM's, not empty or partial by accident."""
    assert {
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:kv_cache_usage_perc",
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:generation_tokens_total",
        "vllm:prompt_tokens_total",
    } <= set(vllm_series)
    assert vllm_series["vllm:num_requests_waiting"] == {"engine", "model_name"}
    assert vllm_series["vllm:time_to_first_token_seconds_bucket"] == {"engine", "model_name", "le"}


def test_the_pod_monitor_labels_every_engine_series(engine_target: dict[str, str]) -> None:
    assert set(engine_target) == {
        "model",
        "namespace",
        "revision",
        "job",
        "pod",
        "container",
        "instance",
        "endpoint",
    }
    assert set(engine_target).isdisjoint({"engine", "model_name", "le"}), "no label is renamed"


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
_SELECTOR = re.compile(r"\b(modelfleet_[a-z0-9_]+|vllm:[a-z0-9_:]+|up)\b\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# A Grafana variable's query: label_values(<series selector>, <label>).
_LABEL_VALUES = re.compile(r"label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")


def selectors(expr: str) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """(metric, [(label, operator, value)]) of each series selector of ``expr``."""
    for match in _SELECTOR.finditer(expr):
        yield match.group(1), _MATCHER.findall(match.group(2) or "")


def grouping_labels(expr: str) -> set[str]:
    """The labels ``expr`` aggregates by, and the one a variable's label_values() reads."""
    groups = _GROUPING.findall(expr) + [m.group(2) for m in _LABEL_VALUES.finditer(expr)]
    return {label.strip() for group in groups for label in group.split(",") if label.strip()}


def fill(expr: str, variables: Mapping[str, str] = GRAFANA_VARIABLES) -> str:
    for variable, value in variables.items():
        expr = expr.replace(variable, value)
    return expr


def dashboard_targets(variables: Mapping[str, str] = GRAFANA_VARIABLES) -> list[tuple[str, str]]:
    """(panel title/refId, expression with Grafana's variables filled in) of every query."""
    return [
        (f"{panel['title']}/{target['refId']}", fill(target["expr"], variables))
        for panel in DASHBOARD["panels"]
        for target in panel.get("targets", [])
    ]


def dashboard_variables() -> list[tuple[str, str]]:
    """(variable name, its label_values() query filled in) of every query variable."""
    return [
        (f"variable {variable['name']}", fill(variable["query"]["query"]))
        for variable in DASHBOARD["templating"]["list"]
        if variable["type"] == "query"
    ]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in RULES["groups"] for rule in group["rules"]]


EXPRESSIONS = (
    [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    + dashboard_targets()
    + dashboard_variables()
)


def promtool_check_rules(
    rules: dict[str, Any], directory: Path
) -> subprocess.CompletedProcess[str]:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return promtool("check", "rules", str(path))


# -- promtool --------------------------------------------------------------------------------
def test_promtool_accepts_the_rule_file() -> None:
    result = promtool("check", "rules", str(RULES_PATH))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each query (and each variable's series selector) becomes a recording rule, which
    promtool parses like Prometheus would."""
    variables = [(where, _LABEL_VALUES.fullmatch(query)) for where, query in dashboard_variables()]
    for where, match in variables:
        assert match, f"{where}: not a label_values() query"
    targets = dashboard_targets() + [(where, m.group(1)) for where, m in variables if m]
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
def unknown_names(expr: str, known: Mapping[str, set[str]], engine_labels: set[str]) -> list[str]:
    """What ``expr`` names that does not exist: a metric not in ``known`` (series name -> label
    names), a label its series lack (vLLM's series also carry ``engine_labels``, the operator's
    TARGET_LABELS), a Model reason the operator does not have."""
    found = list(selectors(expr))
    if not found:
        return ["no metric named"]
    problems = []
    labels_in_scope = set(TARGET_LABELS)
    for metric, matchers in found:
        if metric == "up":
            continue
        if metric not in known:
            problems.append(f"{metric} is not exported")
            continue
        labels = known[metric] | (engine_labels if metric.startswith("vllm:") else TARGET_LABELS)
        labels_in_scope |= labels
        for label, operator, value in matchers:
            if label not in labels:
                problems.append(f"{metric} has no label {label}")
            elif label == "reason" and metric.startswith("modelfleet_"):
                values = value.split("|") if operator in ("=~", "!~") else [value]
                unknown = sorted(set(values) - {r.value for r in Reason})
                problems += [f"no such reason {reason}" for reason in unknown]
    unknown_groups = sorted(grouping_labels(expr) - labels_in_scope)
    problems += [f"no series has the label {label}" for label in unknown_groups]
    return problems


@pytest.mark.parametrize(("where", "expr"), EXPRESSIONS, ids=[w for w, _ in EXPRESSIONS])
def test_every_metric_label_and_reason_exists(
    where: str, expr: str, engine_target: dict[str, str], request: pytest.FixtureRequest
) -> None:
    known = EXPORTED
    if "vllm:" in expr:  # only these wait for the vLLM fixture
        known = EXPORTED | request.getfixturevalue("vllm_series")
    assert unknown_names(expr, known, set(engine_target)) == [], f"{where}: {expr}"


def test_the_name_check_can_fail(
    vllm_series: dict[str, set[str]], engine_target: dict[str, str]
) -> None:
    """It reads real names: a renamed metric, a name vLLM used before, a label no series has
    and a reason the operator lacks are each caught; vLLM's own ``reason`` label is not taken
    for a Model reason."""
    known, labels = EXPORTED | vllm_series, set(engine_target)

    def problems(expr: str) -> list[str]:
        return unknown_names(expr, known, labels)

    assert problems('rate(modelfleet_reconcile_total{result="error"}[5m])') == [
        "modelfleet_reconcile_total is not exported"
    ]
    assert problems('vllm:gpu_cache_usage_perc{model=~".+"}') == [
        "vllm:gpu_cache_usage_perc is not exported"
    ]
    assert problems("rate(vllm:time_per_output_token_seconds_bucket[5m])") == [
        "vllm:time_per_output_token_seconds_bucket is not exported"
    ]
    assert problems('vllm:num_requests_waiting{gpu="0"}') == [
        "vllm:num_requests_waiting has no label gpu"
    ]
    assert problems("sum by (model, service) (vllm:num_requests_waiting)") == [
        "no series has the label service"
    ]
    assert problems("sum by (model) (modelfleet_models)") == ["no series has the label model"]
    assert problems('modelfleet_models{reason=~"Ready|Stuck"}') == ["no such reason Stuck"]
    assert problems('vllm:num_requests_waiting_by_reason{reason="capacity"}') == []
    assert problems("label_values(vllm:num_requests_running, revision)") == []
    assert problems("label_values(vllm:num_requests_running, model_id)") == [
        "no series has the label model_id"
    ]


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
        "ModelfleetEngineQueueGrowing",
        "ModelfleetRolloutUnfinished",
    }
    assert rules["ModelfleetModelStalled"]["for"] == "15m"
    assert 'ready="False"' in rules["ModelfleetModelStalled"]["expr"]
    assert "modelfleet_download_failures_total" in rules["ModelfleetDownloadFailing"]["expr"]
    assert rules["ModelfleetOperatorDown"]["expr"].startswith('absent(up{job=~".*modelfleet.*"}')
    assert rules["ModelfleetOperatorDown"]["labels"]["severity"] == "critical"
    # The engine alerts name the Model, and leave out vLLM servers the operator does not run.
    queue, rollout = rules["ModelfleetEngineQueueGrowing"], rules["ModelfleetRolloutUnfinished"]
    assert "vllm:num_requests_waiting{" in queue["expr"]
    assert grouping_labels(queue["expr"]) == {"namespace", "model"}
    assert grouping_labels(rollout["expr"]) == {"namespace", "model", "revision"}
    for rule in (queue, rollout):
        assert 'model!=""' in rule["expr"]
        assert "{{ $labels.namespace }}/{{ $labels.model }}" in rule["annotations"]["summary"]
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def alert_tests() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ALERT_TESTS_PATH.read_text())
    return document


def test_the_alerts_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(ALERT_TESTS_PATH))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert (ALERT_TESTS_PATH.parent / alert_tests()["rule_files"][0]).resolve() == RULES_PATH


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    fired = {
        case["alertname"]
        for test in alert_tests()["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert fired == {rule["alert"] for rule in alert_rules()}


def test_an_alert_unit_test_can_fail(tmp_path: Path) -> None:
    """promtool reports a test whose expected alert is not the one that fires."""
    document = alert_tests()
    document["rule_files"] = [str(RULES_PATH)]
    (queue,) = [t for t in document["tests"] if t["name"].startswith("a queue that stays long")]
    (firing,) = [case for case in queue["alert_rule_test"] if case["exp_alerts"]]
    firing["exp_alerts"][0]["exp_labels"]["model"] = "bursty"
    result = promtool_test_rules(document, tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
    assert "alertname: ModelfleetEngineQueueGrowing" in result.stdout + result.stderr


# -- the engines' metrics ----------------------------------------------------------------------
# promtool's lint is for metrics named by Prometheus' conventions; these findings are vLLM's own
# naming (a `vllm:` prefix), not an exposition Prometheus cannot read.
_VLLM_NAMING = re.compile(
    r"vllm:[a-z0-9_]+ metric names should not contain ':'"
    r'|vllm:iteration_tokens_total non-counter metrics should not have "_total" suffix'
)


def promtool_findings(exposition: str) -> list[str]:
    """What `promtool check metrics` finds in ``exposition`` beyond vLLM's naming (missing help
    text, duplicate series...); an AssertionError where it cannot parse it (exit code 1)."""
    result = promtool_check_metrics(exposition)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode in (0, 3), output
    return [line for line in output.splitlines() if not _VLLM_NAMING.fullmatch(line)]


def test_promtool_parses_what_vllm_exports(vllm_metrics: str) -> None:
    assert promtool_findings(vllm_metrics) == []


def test_promtool_check_metrics_can_fail(vllm_metrics: str) -> None:
    broken = vllm_metrics + 'vllm:num_requests_waiting{engine="0" 1\n'
    with pytest.raises(AssertionError, match="parsing error"):
        promtool_findings(broken)
    duplicated = vllm_metrics + 'vllm:num_requests_waiting{engine="0",model_name="tiny"} 1\n'
    assert promtool_findings(duplicated) == ["vllm:num_requests_waiting metric not unique"]


def engine_queries(variables: Mapping[str, str]) -> dict[str, str]:
    """The dashboard's queries of vLLM's metrics, by panel title/refId."""
    return {where: expr for where, expr in dashboard_targets(variables) if "vllm:" in expr}


def variables_picking(target: Mapping[str, str]) -> dict[str, str]:
    """Grafana's variables as a user who picked ``target``'s Model fills them in."""
    return dict(GRAFANA_VARIABLES, **{"$namespace": target["namespace"], "$model": target["model"]})


def test_the_engine_panels_return_series_for_a_model(
    vllm_metrics: str, engine_target: dict[str, str], tmp_path: Path
) -> None:
    """Two scrapes of an engine, labelled as the PodMonitor labels them: every engine panel,
    with the Model picked in the dashboard's variables, returns a series (promtool evaluates
    each query as Prometheus would)."""
    queries = engine_queries(variables_picking(engine_target))
    assert len(queries) >= 9, queries
    series = input_series([vllm_metrics, vllm_metrics], engine_target)
    document = returns_series_test(series, queries)
    result = promtool_test_rules(document, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_returns_series_check_can_fail(
    vllm_metrics: str, engine_target: dict[str, str], tmp_path: Path
) -> None:
    """The same scrapes, with another Model picked: no panel shows this one's series."""
    queries = engine_queries(variables_picking(dict(engine_target, model="another-model")))
    series = input_series([vllm_metrics, vllm_metrics], engine_target)
    document = returns_series_test(series, queries)
    result = promtool_test_rules(document, tmp_path)
    assert result.returncode != 0
    assert (result.stdout + result.stderr).count("got: nil") == len(queries)


def test_the_engine_panels_are_per_model() -> None:
    """Every engine query follows the namespace and Model variables and keeps the Model apart."""
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            engine = [(m, ms) for m, ms in selectors(expr) if m.startswith("vllm:")]
            for metric, matchers in engine:
                assert ("namespace", "=~", "$namespace") in matchers, f"{panel['title']}: {metric}"
                assert ("model", "=~", "$model") in matchers, f"{panel['title']}: {metric}"
            if engine:
                assert {"namespace", "model"} <= grouping_labels(expr), panel["title"]


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
        "time to first token",
        "time per output token",
        "kv-cache",
        "requests waiting",
        "tokens per second",
        "engines by revision",
    ):
        assert topic in titles, topic
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for name in ("job", "namespace", "model"):
        assert variables[name]["datasource"] == DATASOURCE, name
        assert variables[name]["includeAll"] and variables[name]["multi"], name
    # The Model list follows the namespace picked, and holds only Models modelfleet runs.
    assert 'namespace=~"$namespace"' in variables["model"]["query"]["query"]
    assert 'model!=""' in variables["namespace"]["query"]["query"]
