"""Generate the CustomResourceDefinitions from the pydantic API types.

The pydantic models are the single source of truth; this module turns their JSON schema into
the structural OpenAPI v3 schema Kubernetes requires (references inlined, nullable unions
collapsed, OpenAPI 3.0 keywords), adds names, printer columns and the status subresource.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from modelfleet.api.v1alpha1 import GROUP, VERSION, FinetuneJob, Model

GENERATED_HEADER = "# Generated from the pydantic models by `modelfleet crds`. Do not edit.\n"

# JSON-schema keywords with no place in a Kubernetes structural schema.
_DROPPED_KEYWORDS = {"title", "$defs", "discriminator"}


@dataclass(frozen=True)
class CrdKind:
    """Names and columns of one custom resource kind."""

    model: type[BaseModel]
    kind: str
    plural: str
    short_names: tuple[str, ...]
    printer_columns: tuple[dict[str, Any], ...]

    @property
    def name(self) -> str:
        """metadata.name of the CRD."""
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        """File the CRD is written to."""
        return f"{GROUP}_{self.plural}.yaml"


def _condition_column(name: str, field: str, condition: str = "Ready") -> dict[str, Any]:
    return {
        "name": name,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{condition}")].{field}',
    }


_AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KINDS: tuple[CrdKind, ...] = (
    CrdKind(
        model=Model,
        kind="Model",
        plural="models",
        short_names=("mfm",),
        printer_columns=(
            _condition_column("Ready", "status"),
            _condition_column("Reason", "reason"),
            {"name": "Revision", "type": "string", "jsonPath": ".status.summary.revision"},
            {"name": "Progress", "type": "string", "jsonPath": ".status.summary.progress"},
            {"name": "Replicas", "type": "string", "jsonPath": ".status.summary.replicas"},
            _AGE_COLUMN,
            {
                "name": "Source",
                "type": "string",
                "jsonPath": ".status.summary.source",
                "priority": 1,
            },
            {
                "name": "Endpoint",
                "type": "string",
                "jsonPath": ".status.serving.endpoint",
                "priority": 1,
            },
        ),
    ),
    CrdKind(
        model=FinetuneJob,
        kind="FinetuneJob",
        plural="finetunejobs",
        short_names=("ftj",),
        printer_columns=(
            {"name": "Status", "type": "string", "jsonPath": ".status.summary.status"},
            {"name": "Progress", "type": "integer", "jsonPath": ".status.progress.percent"},
            {"name": "Loss", "type": "number", "jsonPath": ".status.progress.loss"},
            {
                "name": "Base",
                "type": "string",
                "jsonPath": ".spec.baseModel.name",
                "priority": 1,
            },
            {"name": "Promoted", "type": "string", "jsonPath": ".status.summary.promoted"},
            _AGE_COLUMN,
        ),
    ),
)


def _is_null(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null"


def _structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one pydantic JSON-schema node as a structural OpenAPI v3 node."""
    node = copy.deepcopy(schema)
    ref = node.pop("$ref", None)
    if ref is not None:
        target = _structural(defs[ref.rsplit("/", 1)[-1]], defs)
        # The field's own description and extras win over the referenced class's docstring.
        target.update({k: v for k, v in node.items() if k != "default"})
        if "default" in node:
            target["default"] = node["default"]
        node = target
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        options = [option for option in any_of if not _is_null(option)]
        if len(options) != 1:
            raise ValueError(f"unions other than Optional cannot be expressed: {any_of}")
        merged = _structural(options[0], defs)
        merged.update(node)
        node = merged
    if node.get("default", 0) is None:
        del node["default"]
    if "const" in node:  # a one-value Literal; OpenAPI 3.0 has no const
        node["enum"] = [node.pop("const")]
    for keyword in _DROPPED_KEYWORDS:
        node.pop(keyword, None)
    # OpenAPI 3.0 (what Kubernetes speaks) spells exclusive bounds as booleans.
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(node.get(exclusive), int | float) and not isinstance(node[exclusive], bool):
            node[bound] = node.pop(exclusive)
            node[exclusive] = True
    if "properties" in node:
        node["properties"] = {k: _structural(v, defs) for k, v in node["properties"].items()}
        node.pop("additionalProperties", None)
        if not node.get("required"):
            node.pop("required", None)
    elif isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"], defs)
    elif node.get("additionalProperties") is True:
        del node["additionalProperties"]
        node["x-kubernetes-preserve-unknown-fields"] = True
    if isinstance(node.get("items"), dict):
        node["items"] = _structural(node["items"], defs)
    return node


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural openAPIV3Schema of a root API type."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema = _structural(raw, raw.get("$defs", {}))
    schema["properties"]["metadata"] = {"type": "object"}
    for field in ("apiVersion", "kind"):
        schema["properties"][field] = {"type": "string"}
    schema["required"] = ["spec"]
    return schema


def build_crd(kind: CrdKind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.name,
            "labels": {"app.kubernetes.io/part-of": "modelfleet"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": ["modelfleet"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.printer_columns),
                    "schema": {"openAPIV3Schema": openapi_schema(kind.model)},
                }
            ],
        },
    }


def render_crd(kind: CrdKind) -> str:
    """The CRD as the YAML text written to disk."""
    body = yaml.safe_dump(build_crd(kind), sort_keys=False, width=100, allow_unicode=True)
    return GENERATED_HEADER + body


def peering_crds() -> list[dict[str, Any]]:
    """kopf's peering resources (kopf.dev/v1): with several operator replicas, the replica of
    the highest priority acts and the others wait."""
    crds = []
    for scope, kind, plural in (
        ("Cluster", "ClusterKopfPeering", "clusterkopfpeerings"),
        ("Namespaced", "KopfPeering", "kopfpeerings"),
    ):
        crds.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {
                    "name": f"{plural}.kopf.dev",
                    "labels": {"app.kubernetes.io/part-of": "modelfleet"},
                },
                "spec": {
                    "group": "kopf.dev",
                    "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                    "scope": scope,
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    ],
                },
            }
        )
    return crds


PEERING_FILE = "kopf.dev_peerings.yaml"


def crd_outputs(repo_root: Path) -> dict[Path, str]:
    """Every generated file and its expected content: crds/ and the chart's copy."""
    files = {kind.file_name: render_crd(kind) for kind in KINDS}
    files[PEERING_FILE] = GENERATED_HEADER + yaml.safe_dump_all(
        peering_crds(), sort_keys=False, width=100
    )
    outputs: dict[Path, str] = {}
    for name, text in files.items():
        for directory in ("crds", "charts/modelfleet/crds"):
            outputs[repo_root / directory / name] = text
    return outputs


def write_crds(repo_root: Path) -> list[Path]:
    """Write every generated file; return the paths written."""
    written = []
    for path, text in crd_outputs(repo_root).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def stale_crds(repo_root: Path) -> list[str]:
    """Unified diffs of every generated file that differs from what the models produce."""
    diffs = []
    for path, expected in crd_outputs(repo_root).items():
        actual = path.read_text() if path.exists() else ""
        if actual != expected:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        actual.splitlines(keepends=True),
                        expected.splitlines(keepends=True),
                        fromfile=f"{path} (on disk)",
                        tofile=f"{path} (generated)",
                    )
                )
            )
    return diffs
