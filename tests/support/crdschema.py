"""Evaluate a manifest against a generated CRD the way the API server does.

Order as in the API server: structural defaulting, then unknown-field rejection (kubectl's
strict field validation), then OpenAPI v3 value validation (jsonschema, Draft 4: the
OpenAPI 3.0 dialect with boolean exclusive bounds), then the CEL rules of
``x-kubernetes-validations`` (cel-python). Errors are "<field path>: <message>" strings.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy.adapter import json_to_cel

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_crd(plural: str) -> dict[str, Any]:
    """The generated CRD from crds/."""
    crd: dict[str, Any] = yaml.safe_load(
        (REPO_ROOT / "crds" / f"modelfleet.io_{plural}.yaml").read_text()
    )
    return crd


def crd_schema(crd: dict[str, Any]) -> dict[str, Any]:
    """The openAPIV3Schema of the CRD's only version."""
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill in schema defaults for absent properties, recursively, as the API server does."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is not None:
            for key, sub in properties.items():
                if key not in value and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                if key in value:
                    value[key] = apply_defaults(sub, value[key])
        elif isinstance(schema.get("additionalProperties"), dict):
            for key in value:
                value[key] = apply_defaults(schema["additionalProperties"], value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def _unknown_fields(schema: dict[str, Any], value: Any, path: str) -> Iterator[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is not None:
            for key, sub in value.items():
                if key not in properties:
                    yield f'{_join(path, key)}: unknown field "{_join(path, key)}"'
                else:
                    yield from _unknown_fields(properties[key], sub, _join(path, key))
        elif isinstance(schema.get("additionalProperties"), dict):
            for key, sub in value.items():
                yield from _unknown_fields(schema["additionalProperties"], sub, _join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _unknown_fields(schema["items"], item, _join(path, index))


def _as_draft4(schema: Any) -> Any:
    """OpenAPI nodes as Draft 4 JSON schema: int-or-string becomes a type union."""
    if isinstance(schema, dict):
        node = {k: _as_draft4(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
        if schema.get("x-kubernetes-int-or-string"):
            node["type"] = ["integer", "string"]
        return node
    if isinstance(schema, list):
        return [_as_draft4(item) for item in schema]
    return schema


def _openapi_errors(schema: dict[str, Any], value: Any) -> Iterator[str]:
    validator = jsonschema.Draft4Validator(_as_draft4(schema))
    for error in validator.iter_errors(value):
        path = ""
        for key in error.absolute_path:
            path = _join(path, key)
        if error.validator == "required":
            # The API server names the missing field itself: "spec.baseModel: Required value".
            for missing in error.validator_value:
                if isinstance(error.instance, dict) and missing not in error.instance:
                    yield f"{_join(path, missing)}: Required value"
            continue
        yield f"{path}: Invalid value: {error.message}"


_CEL = celpy.Environment()

# Kubernetes quantities (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/).
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate("kMGTPE")},
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
}


class _Quantity(celpy.celtypes.StringType):
    """A quantity value of the API server's CEL quantity library."""

    @property
    def amount(self) -> Decimal:
        number, suffix = _QUANTITY.fullmatch(str(self)).groups()  # type: ignore[union-attr]
        if not suffix:
            return Decimal(number)
        if suffix in _SUFFIXES:
            return Decimal(number) * _SUFFIXES[suffix]
        return Decimal(number) * Decimal(10) ** int(suffix[1:])


def _is_quantity(text: celpy.celtypes.StringType) -> celpy.celtypes.BoolType:
    return celpy.celtypes.BoolType(_QUANTITY.fullmatch(str(text)) is not None)


def _quantity(text: celpy.celtypes.StringType) -> _Quantity:
    if not _is_quantity(text):
        raise ValueError(f"not a quantity: {text}")
    return _Quantity(text)


_QUANTITY_FUNCTIONS: dict[str, Any] = {
    "isQuantity": _is_quantity,
    "quantity": _quantity,
    "isGreaterThan": lambda a, b: celpy.celtypes.BoolType(a.amount > b.amount),
    "isLessThan": lambda a, b: celpy.celtypes.BoolType(a.amount < b.amount),
}


def _cel_errors(schema: dict[str, Any], value: Any, old: Any, path: str) -> Iterator[str]:
    for rule in schema.get("x-kubernetes-validations", []):
        uses_old = "oldSelf" in rule["rule"]
        if uses_old and old is None:
            continue  # a transition rule applies to updates only
        activation = {"self": json_to_cel(value)}
        if uses_old:
            activation["oldSelf"] = json_to_cel(old)
        program = _CEL.program(_CEL.compile(rule["rule"]), functions=_QUANTITY_FUNCTIONS)
        result = program.evaluate(activation)
        if not (isinstance(result, celpy.celtypes.BoolType) and result):
            field = path + rule.get("fieldPath", "")
            yield f"{field}: Invalid value: {rule.get('message', rule['rule'])}"
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key, sub in value.items():
            child = properties.get(key)
            if child is None and isinstance(schema.get("additionalProperties"), dict):
                child = schema["additionalProperties"]
            if child is not None:
                old_sub = old.get(key) if isinstance(old, dict) else None
                yield from _cel_errors(child, sub, old_sub, _join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _cel_errors(schema["items"], item, None, _join(path, index))


def validate(crd: dict[str, Any], manifest: dict[str, Any], old: Any = None) -> list[str]:
    """Every error the API server would report for creating (or updating from ``old``)."""
    schema = crd_schema(crd)
    obj = apply_defaults(schema, copy.deepcopy(manifest))
    errors = list(_unknown_fields(schema, obj, ""))
    errors += _openapi_errors(schema, obj)
    if errors:
        return errors  # the API server does not run CEL on a value of the wrong shape
    cel_view = dict(obj)
    cel_view["metadata"] = {
        k: v for k, v in obj.get("metadata", {}).items() if k in ("name", "generateName")
    }
    old_view = None
    if old is not None:
        old_view = apply_defaults(schema, copy.deepcopy(old))
    return list(_cel_errors(schema, cel_view, old_view, ""))
