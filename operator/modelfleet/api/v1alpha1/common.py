"""Types shared by Model and FinetuneJob: the API's building blocks.

Every class derives from :class:`ApiModel`: Python attributes are snake_case, the wire format
is camelCase, unknown fields are refused, and attribute docstrings become the descriptions that
``kubectl explain`` prints.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "modelfleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Kubernetes resource quantity (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/),
# non-negative; RE2-compatible so the API server evaluates the same pattern.
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# Hugging Face / ModelScope repo id: "name" or "namespace/name".
REPO_ID_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"
# A branch, tag or commit sha; branches may contain slashes (refs/pr/1).
# No ".." anywhere (git refuses it in ref names too), so no revision reads as a path upwards.
REVISION_PATTERN = r"^[A-Za-z0-9](\.?[A-Za-z0-9_/-])*\.?$"
# A key of a Secret or ConfigMap, as the API server accepts it, but never "." or "..".
DATA_KEY_PATTERN = r"^[-._a-zA-Z0-9]*[-_a-zA-Z0-9][-._a-zA-Z0-9]*$"
# An object name in the same namespace (DNS-1123 subdomain).
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
# An absolute path with no "." or ".." segment (RE2 has no lookahead: a segment starts with a
# character other than ".", or is "." followed by another character, or ".." followed by more).
_SEGMENT = r"([^/.\x00][^/\x00]*|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+)"
SAFE_PATH_PATTERN = rf"^(/{_SEGMENT})*/?$"
# A StorageClass name, or "" (no class: bind to a pre-created volume).
STORAGE_CLASS_PATTERN = r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)?$"
# An environment variable name, as the API server accepts it.
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
# A qualified resource name such as nvidia.com/gpu.
# An accelerator: an extended resource, always domain-qualified (nvidia.com/gpu,
# amd.com/gpu), so that "memory" or "cpu" can never be requested (and limited) by GPU count.
EXTENDED_RESOURCE_PATTERN = (
    r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# A hub endpoint: http(s), a host, then a path; no userinfo ("https://hub@evil.example"
# reads as the host evil.example), no spaces.
ENDPOINT_PATTERN = r"^https?://[^\s/@?#]+([/?#][^\s]*)?$"
# The end of an endpoint's host: a port, a path, a query, a fragment or nothing.
_HOST_END = r"\.?([:/?#]|$)"
# A host made only of numeric labels (decimal, octal with a leading 0, or 0x hex)...
_NUMERIC_HOST = rf"^https?://(0[xX][0-9a-fA-F]*|[0-9]+)(\.(0[xX][0-9a-fA-F]*|[0-9]+))*{_HOST_END}"
# ...must be a canonical dotted quad: "2852039166" and "0251.0376.0251.0376" both reach
# 169.254.169.254 through a resolver that reads them as numbers.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = rf"^https?://{_OCTET}(\.{_OCTET}){{3}}{_HOST_END}"
# Link-local (cloud metadata services answer on 169.254.169.254 and fe80::), the
# unspecified address and the metadata host names.
_METADATA_HOST = (
    r"(?i)^https?://(169\.254\.[0-9.]+|0\.0\.0\.0|\[[0:]+\]|\[[0:]*:ffff:(169\.254\.|a9fe:)[^\]]*\]"
    rf"|\[fe[89ab][0-9a-f]:[^\]]*\]|metadata|metadata\.google\.internal){_HOST_END}"
)
# Hosts to which plain http may carry a token: this node and in-cluster Services.
_PLAIN_HTTP_HOST = (
    r"(?i)^http://(localhost|127\.[0-9.]+|\[::1\]|[-a-z0-9.]+\.svc(\.cluster\.local)?)"
    rf"{_HOST_END}"
)


def _quantity_to_str(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity_to_str),
    Field(pattern=QUANTITY_PATTERN),
    WithJsonSchema(
        {"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN},
        mode="validation",
    ),
]
"""A Kubernetes quantity, given as a string ("20Gi") or a number."""

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=OBJECT_NAME_PATTERN)]

Endpoint = Annotated[
    str,
    Field(
        max_length=2048,
        pattern=ENDPOINT_PATTERN,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"!self.matches(r'{_NUMERIC_HOST}') ||"
                    f" self.matches(r'{_CANONICAL_IPV4}')",
                    "message": "a numeric host must be a dotted quad of decimal octets",
                },
                {
                    "rule": f"!self.matches(r'{_METADATA_HOST}')",
                    "message": "link-local, unspecified and cloud metadata hosts are refused",
                },
            ]
        },
    ),
]
"""A hub's base URL: http(s), no userinfo, never a link-local or metadata host."""

TOKEN_OVER_PLAIN_HTTP_RULE: JsonDict = {
    "rule": f"!has(self.endpoint) || !has(self.tokenSecretRef) ||"
    f" self.endpoint.startsWith('https://') || self.endpoint.matches(r'{_PLAIN_HTTP_HOST}')",
    "message": "a token is sent only over https (plain http only to localhost or a"
    " cluster Service, *.svc)",
    "fieldPath": ".endpoint",
}
"""The CEL rule of a source with an endpoint and a token: no token in clear across a network."""


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def default_object(api_type: type[ApiModel]) -> dict[str, Any]:
    """Schema extra giving an object field its full default, so the API server fills it in
    (and validates it against the object's own rules) when the field is left out."""
    return {"default": api_type().to_wire()}


class SecretKeyRef(ApiModel):
    """A key of a Secret in the Model's namespace."""

    name: ObjectName
    """Name of the Secret."""
    key: str = Field(default="token", min_length=1, max_length=253, pattern=DATA_KEY_PATTERN)
    """Key within the Secret whose value is the token."""


class ResourceRequirements(ApiModel):
    """Compute resources of a container, as in a Pod spec."""

    limits: dict[str, Quantity] | None = None
    """Maximum resources, e.g. {"cpu": "2", "memory": "8Gi"}."""
    requests: dict[str, Quantity] | None = None
    """Minimum resources the scheduler reserves."""


class EnvVar(ApiModel):
    """An environment variable for the container, as in a Pod spec."""

    name: str = Field(min_length=1, max_length=253, pattern=ENV_NAME_PATTERN)
    """Variable name."""
    value: str | None = None
    """Literal value."""
    value_from: Annotated[
        dict[str, Any] | None,
        WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
    ] = None
    """Source for the value (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef)."""


class Toleration(ApiModel):
    """A toleration, as in a Pod spec."""

    key: str | None = None
    """Taint key the toleration applies to; empty matches all keys."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal (default Equal)."""
    value: str | None = None
    """Taint value the toleration matches."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = None
    """For NoExecute: how long the pod stays bound after the taint appears."""


JOB_ENV_RULE: JsonDict = {
    "rule": "self.all(e, !e.name.startsWith('MODELFLEET_'))",
    "message": "names starting with MODELFLEET_ are the Job's own settings",
}


class JobPodSettings(ApiModel):
    """Where and how a Job's pod runs on a shared cluster. Each setting left out takes the
    installation's default (the chart's ``defaults``); the Job's ``modelfleet.io/defaults``
    annotation names the ones that did."""

    node_selector: dict[str, str] | None = Field(default=None, max_length=64)
    """Node labels the Job's pod must run on, e.g. a CPU pool for downloads."""
    tolerations: list[Toleration] | None = Field(default=None, max_length=64)
    """Taints the Job's pod tolerates, e.g. a tainted GPU pool for training."""
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=128,
        json_schema_extra={"x-kubernetes-validations": [JOB_ENV_RULE]},
    )
    """Extra environment of the Job's container, e.g. HTTPS_PROXY and NO_PROXY; a variable
    of the same name in the installation's defaults is replaced."""
    image_pull_secrets: list[ObjectName] | None = Field(default=None, max_length=16)
    """Names of Secrets in the namespace to pull the Job's image with."""


class Condition(ApiModel):
    """A kstatus-compatible condition."""

    type: str
    """Condition type, e.g. Ready, Reconciling, Stalled, Downloaded, Serving."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str | None = None
    """CamelCase reason; the same reason is emitted as an Event."""
    message: str | None = None
    """Human-readable detail."""
    last_transition_time: datetime | None = None
    """When the status last changed."""
    observed_generation: int | None = None
    """The metadata.generation this condition was computed from."""


# A list of conditions is a map keyed by type, so server-side apply merges them entry by entry.
CONDITIONS_LIST_SCHEMA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class ObjectMeta(BaseModel):
    """The part of metadata the operator reads."""

    model_config = ConfigDict(extra="allow")

    name: str = ""
    namespace: str | None = None
    generation: int | None = None
    uid: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
