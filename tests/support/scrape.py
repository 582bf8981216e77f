"""What Prometheus makes of a serving pod: the target a PodMonitor gives it (discovery labels,
relabelling) and the metrics the pinned vLLM exports there.

``pod_monitor_target`` follows Prometheus' Kubernetes pod discovery and the prometheus-operator's
generated scrape config far enough to say which labels every series of a pod gets; only the
``replace`` action is implemented, and any other fails loudly. ``vllm_exposition`` asks the
CPU vLLM of hack/engine-env.sh for its /metrics text: its own ``PrometheusStatLogger``, built
from a real engine config of the tiny model, without loading weights or serving.
``input_series`` turns scrapes of a target into what Prometheus would store, for
``promtool test rules`` to run queries on (``returns_series_test``).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import engine_python, tool_path

_INVALID_LABEL_CHARACTER = re.compile(r"[^a-zA-Z0-9_]")


def sanitize(name: str) -> str:
    """A Kubernetes label or annotation name as a Prometheus label name part."""
    return _INVALID_LABEL_CHARACTER.sub("_", name)


def _replacement(text: str) -> str:
    """Prometheus' ``$1`` / ``${name}`` as Python's ``\\g<1>`` / ``\\g<name>``."""
    return re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", text)


def relabel(labels: Mapping[str, str], rules: list[dict[str, Any]]) -> dict[str, str]:
    """``labels`` after the ``relabelings`` of a prometheus-operator endpoint."""
    result = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        if action != "replace":
            raise NotImplementedError(f"relabel action {action!r}")
        separator = rule.get("separator", ";")
        source = separator.join(result.get(name, "") for name in rule.get("sourceLabels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), source)
        if match is None:
            continue
        value = match.expand(_replacement(rule.get("replacement", "$1")))
        target = rule["targetLabel"]
        if value:
            result[target] = value
        else:
            result.pop(target, None)
    return result


def pod_discovery_labels(
    pod_template: Mapping[str, Any], namespace: str, pod_name: str, port_name: str
) -> dict[str, str]:
    """The ``__meta_kubernetes_*`` labels of one container port of a pod made from
    ``pod_template`` (a Deployment's spec.template)."""
    metadata = pod_template.get("metadata", {})
    labels = {
        "__address__": f"198.18.0.2:{port_name}",
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": pod_name,
    }
    for key, value in (metadata.get("labels") or {}).items():
        labels[f"__meta_kubernetes_pod_label_{sanitize(key)}"] = value
    for key, value in (metadata.get("annotations") or {}).items():
        labels[f"__meta_kubernetes_pod_annotation_{sanitize(key)}"] = value
    for container in pod_template["spec"]["containers"]:
        for port in container.get("ports", []):
            if port.get("name") == port_name:
                labels["__meta_kubernetes_pod_container_name"] = container["name"]
                labels["__meta_kubernetes_pod_container_port_name"] = port_name
    return labels


def pod_monitor_target(
    pod_monitor: Mapping[str, Any],
    pod_template: Mapping[str, Any],
    namespace: str,
    pod_name: str = "pod-0",
) -> dict[str, str] | None:
    """The labels ``pod_monitor``'s first endpoint gives every series scraped from a pod of
    ``pod_template`` in ``namespace``; None when it does not scrape that pod."""
    spec = pod_monitor["spec"]
    pod_labels = pod_template.get("metadata", {}).get("labels") or {}
    if not spec["selector"]["matchLabels"].items() <= pod_labels.items():
        return None
    selector = spec.get("namespaceSelector", {})
    if not selector.get("any") and namespace not in selector.get(
        "matchNames", [pod_monitor["metadata"]["namespace"]]
    ):
        return None
    endpoint = spec["podMetricsEndpoints"][0]
    discovered = pod_discovery_labels(pod_template, namespace, pod_name, endpoint["port"])
    if "__meta_kubernetes_pod_container_port_name" not in discovered:
        return None  # the operator's generated config keeps only the named port
    monitor = pod_monitor["metadata"]
    # What the prometheus-operator's generated scrape config sets before the user's rules.
    operator_labels = {
        "job": f"{monitor['namespace']}/{monitor['name']}",
        "namespace": namespace,
        "pod": pod_name,
        "container": discovered["__meta_kubernetes_pod_container_name"],
        "endpoint": endpoint["port"],
    }
    labels = relabel(discovered | operator_labels, endpoint.get("relabelings", []))
    labels.setdefault("instance", labels["__address__"])
    return {name: value for name, value in labels.items() if not name.startswith("__")}


_EXPOSITION = """
import sys
import prometheus_client
from vllm.engine.arg_utils import EngineArgs
from vllm.v1.metrics.loggers import PrometheusStatLogger

model, served_name, out = sys.argv[1:]
config = EngineArgs(
    model=model, served_model_name=[served_name], max_model_len=256
).create_engine_config()
PrometheusStatLogger(config)
with open(out, "w") as file:
    file.write(prometheus_client.generate_latest(prometheus_client.REGISTRY).decode())
"""


def vllm_exposition(directory: Path, served_name: str = "tiny") -> str | None:
    """The /metrics text of the pinned CPU vLLM for the tiny model (every metric registered,
    none observed yet); None where hack/engine-env.sh has not installed it."""
    python = engine_python()
    if python is None:
        return None
    from tests.support.tinymodel import write_tiny_llama

    weights = write_tiny_llama(directory / "weights")
    out = directory / "metrics.txt"
    result = subprocess.run(
        [python, "-c", _EXPOSITION, str(weights), served_name, str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"VLLM_TARGET_DEVICE": "cpu", "PATH": "/usr/bin:/bin", "HOME": str(directory)},
    )
    if result.returncode != 0:
        raise AssertionError(f"vLLM's metrics could not be built:\n{result.stderr[-3000:]}")
    return out.read_text()


def series_of(exposition: str) -> dict[str, set[str]]:
    """Series name -> label names, of every sample of an exposition text."""
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def _value(number: float) -> str:
    """A sample value as promtool's series notation writes it."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)


def _selector(name: str, labels: Mapping[str, str]) -> str:
    def quoted(value: str) -> str:
        return json.dumps(value)  # a JSON string is a valid PromQL string literal here

    return name + "{" + ",".join(f"{k}={quoted(v)}" for k, v in sorted(labels.items())) + "}"


def input_series(scrapes: Sequence[str], target: Mapping[str, str]) -> list[dict[str, str]]:
    """``promtool test rules`` input series for successive scrapes (exposition texts) of one
    target: each sample with the target's labels, as Prometheus stores it. As with
    ``honor_labels: false`` (the prometheus-operator's default), a label the target sets wins,
    and the exposed one is kept as ``exported_<name>``; a series missing from a scrape is
    ``_`` there."""
    values: dict[str, list[str]] = {}
    for index, text in enumerate(scrapes):
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = {
                    (f"exported_{k}" if k in target else k): v for k, v in sample.labels.items()
                }
                key = _selector(sample.name, labels | dict(target))
                values.setdefault(key, ["_"] * len(scrapes))[index] = _value(sample.value)
    return [{"series": key, "values": " ".join(row)} for key, row in values.items()]


def returns_series_test(series: list[dict[str, str]], queries: Mapping[str, str]) -> dict[str, Any]:
    """A ``promtool test rules`` document that passes when each query of ``queries`` (a name
    -> PromQL) returns at least one series after the last scrape of ``series``. The scrapes are
    taken a minute apart: promtool evaluates on its evaluation interval's whole minutes."""
    scrapes = len(series[0]["values"].split()) if series else 1
    return {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "every query returns series",
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        # The name comes back in promtool's report of a failing query.
                        "expr": f"count(({expr})) > bool 0 # {name}",
                        "eval_time": f"{scrapes - 1}m",
                        "exp_samples": [{"labels": "{}", "value": 1}],
                    }
                    for name, expr in queries.items()
                ],
            }
        ],
    }


def promtool_test_rules(document: Mapping[str, Any], directory: Path) -> CompletedProcess[str]:
    """``promtool test rules`` on ``document``, written to ``directory``."""
    path = directory / "rules.test.yaml"
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False))
    return promtool("test", "rules", str(path))


def promtool_check_metrics(exposition: str) -> CompletedProcess[str]:
    """``promtool check metrics`` with ``exposition`` on its stdin: exit code 1 when it does not
    parse, 3 when it parses with lint findings (printed one a line), 0 when neither."""
    return promtool("check", "metrics", stdin=exposition)


def promtool(*args: str, stdin: str | None = None) -> CompletedProcess[str]:
    """The pinned promtool (hack/build-tools.sh), its output captured, never raising."""
    return subprocess.run(
        [tool_path("promtool"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
