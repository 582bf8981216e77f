"""The Jobs that download weights into the claim, or verify weights already on one.

Both run ``python -m modelfleet.downloader``, configured only through environment variables
(``modelfleet.downloader.settings``). The result and its typed reason come back through the
termination message; exit code 2 means no retry can help, so the Job fails at once.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

from modelfleet.api.v1alpha1 import Model
from modelfleet.api.v1alpha1.common import SecretKeyRef
from modelfleet.builders.common import (
    LOG_HEADROOM_GIB,
    RETRY_TOKEN_ANNOTATION,
    REVISION_ANNOTATION,
    TMP_PATH,
    TMP_VOLUME,
    WEIGHTS_VOLUME,
    Manifest,
    claim_volume,
    container_security_context,
    env_var,
    job_spec,
    labels,
    model_name,
    model_namespace,
    object_meta,
    scratch_gib,
    secret_env_var,
    stamp_spec_hash,
    tmp_volume,
    volume_mount,
    with_ephemeral_storage,
)
from modelfleet.builders.naming import (
    download_job_name,
    download_revision_key,
    pvc_model_path,
    verify_job_name,
    verify_revision_key,
    weights_claim_name,
)
from modelfleet.settings import OperatorSettings

CONTAINER_NAME = "download"
DOWNLOADER_COMMAND = ["python", "-m", "modelfleet.downloader"]
TERMINATION_LOG = "/dev/termination-log"
# Attempts inside one pod; the Job's backoffLimit (spec.download.retries) counts pods.
IN_PROCESS_ATTEMPTS = 3
DEFAULT_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "250m", "memory": "512Mi"},
    "limits": {"memory": "2Gi"},
}
TMP_SIZE_LIMIT = "1Gi"
# The downloader's /tmp holds the hub clients' caches and lock files; the weights go to the claim.
EPHEMERAL_REQUEST = "256Mi"

# huggingface_hub and modelscope write caches and token lookups under HOME; the root
# filesystem is read-only and UID 65532 has no home directory in the image.
_SCRATCH_ENV = (("HOME", TMP_PATH), ("XDG_CACHE_HOME", f"{TMP_PATH}/.cache"))


def _downloader_image(model: Model, settings: OperatorSettings) -> str:
    return model.spec.download.image or settings.downloader_image


def _resources(model: Model) -> dict[str, Any]:
    if model.spec.download.resources is not None:
        return model.spec.download.resources.to_wire()
    return copy.deepcopy(DEFAULT_RESOURCES)


def _job(
    model: Model,
    *,
    settings: OperatorSettings,
    name: str,
    component: Literal["download", "verify"],
    annotations: dict[str, str],
    env: list[dict[str, Any]],
    read_only: bool,
    backoff_limit: int,
) -> Manifest:
    """The Job shape download and verify share."""
    volumes = [
        claim_volume(weights_claim_name(model), read_only=read_only),
        tmp_volume(TMP_SIZE_LIMIT),
    ]
    resources = with_ephemeral_storage(
        _resources(model),
        request=EPHEMERAL_REQUEST,
        limit=f"{scratch_gib(volumes) + LOG_HEADROOM_GIB}Gi",
    )
    container = downloader_container(
        CONTAINER_NAME,
        _downloader_image(model, settings),
        env,
        resources,
        volume_mount(WEIGHTS_VOLUME, settings.model_root, read_only=read_only),
    )
    spec = job_spec(
        service_account=settings.job_service_account,
        pod_labels=labels(model, component),
        container=container,
        volumes=volumes,
        backoff_limit=backoff_limit,
        active_deadline_seconds=model.spec.download.active_deadline_seconds,
    )
    manifest: Manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(model, name, component, annotations=annotations),
        "spec": spec,
    }
    return stamp_spec_hash(manifest)


def downloader_container(
    name: str,
    image: str,
    env: list[dict[str, Any]],
    resources: dict[str, Any],
    target: dict[str, Any],
) -> dict[str, Any]:
    """A container running the downloader with ``env``, writing to the volume mount ``target``
    (or reading it, when read-only) and using /tmp as scratch."""
    return {
        "name": name,
        "image": image,
        "command": list(DOWNLOADER_COMMAND),
        "env": env,
        "resources": resources,
        "securityContext": container_security_context(read_only_root=True),
        "terminationMessagePath": TERMINATION_LOG,
        # The result line is written to the termination log; logs are a fallback when the
        # process dies before writing it (OOM kill, import error).
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [target, volume_mount(TMP_VOLUME, TMP_PATH)],
    }


def downloader_env() -> list[dict[str, Any]]:
    """What every downloader container is given besides its task: where its result and its
    scratch files go, and no telemetry."""
    return [
        env_var("MODELFLEET_TERMINATION_LOG", TERMINATION_LOG),
        *(env_var(name, value) for name, value in _SCRATCH_ENV),
        env_var("HF_HUB_DISABLE_TELEMETRY", "1"),
    ]


def _common_env(model: Model) -> list[dict[str, Any]]:
    return [
        env_var("MODELFLEET_STATUS_TARGET", f"{model_namespace(model)}/{model_name(model)}"),
        *downloader_env(),
    ]


def hub_access_env(
    endpoint: str | None, token_ref: SecretKeyRef | None, token_env: str = "HF_TOKEN"
) -> list[dict[str, Any]]:
    """The endpoint and the token (read from its Secret at run time) of a hub source."""
    env: list[dict[str, Any]] = []
    if endpoint:
        env.append(env_var("HF_ENDPOINT", endpoint))
        # Mirrors and test hubs speak the plain HTTP protocol, not Xet storage.
        env.append(env_var("HF_HUB_DISABLE_XET", "1"))
    if token_ref is not None:
        env.append(secret_env_var(token_env, token_ref.name, token_ref.key))
    return env


def build_download_job(
    model: Model,
    *,
    settings: OperatorSettings,
    revision: str,
    retry_token: str,
    protected_paths: list[str],
) -> Manifest:
    """The Job that downloads ``revision`` of a huggingface or modelscope source into the claim.

    ``protected_paths`` (the directory being served) survive the pruning of old revisions.
    """
    source = model.spec.source
    download = model.spec.download
    env: list[dict[str, Any]] = [env_var("MODELFLEET_MODE", "download")]
    token_env = "HF_TOKEN"
    if source.huggingface is not None:
        hf = source.huggingface
        env += [env_var("MODELFLEET_SOURCE", "huggingface"), env_var("MODELFLEET_REPO", hf.repo)]
        allow, ignore, endpoint, token_ref = (
            hf.allow_patterns,
            hf.ignore_patterns,
            hf.endpoint,
            hf.token_secret_ref,
        )
    elif source.modelscope is not None:
        ms = source.modelscope
        env += [env_var("MODELFLEET_SOURCE", "modelscope"), env_var("MODELFLEET_REPO", ms.repo)]
        allow, ignore, endpoint, token_ref = None, None, None, ms.token_secret_ref
        token_env = "MODELSCOPE_API_TOKEN"
    else:
        raise ValueError(
            f"Model {model.metadata.name!r}: only huggingface and modelscope sources download"
        )
    env += [
        env_var("MODELFLEET_REVISION", revision),
        env_var("MODELFLEET_MODEL_ROOT", settings.model_root),
    ]
    if allow:
        env.append(env_var("MODELFLEET_ALLOW_PATTERNS", json.dumps(allow)))
    if ignore:
        env.append(env_var("MODELFLEET_IGNORE_PATTERNS", json.dumps(ignore)))
    env += [
        env_var("MODELFLEET_VERIFY", download.verify),
        env_var("MODELFLEET_RETRIES", str(IN_PROCESS_ATTEMPTS)),
        env_var("MODELFLEET_BACKOFF_INITIAL_SECONDS", str(download.backoff.initial_seconds)),
        env_var("MODELFLEET_BACKOFF_MAX_SECONDS", str(download.backoff.max_seconds)),
        env_var("MODELFLEET_STALL_TIMEOUT_SECONDS", str(download.stall_timeout_seconds)),
        env_var("MODELFLEET_KEEP_REVISIONS", str(model.spec.storage.keep_revisions)),
        env_var("MODELFLEET_PROTECTED_PATHS", json.dumps(list(protected_paths))),
        *_common_env(model),
    ]
    env += hub_access_env(endpoint, token_ref, token_env)

    name = download_job_name(model, download_revision_key(model, revision), retry_token)
    return _job(
        model,
        settings=settings,
        name=name,
        component="download",
        annotations={REVISION_ANNOTATION: revision, RETRY_TOKEN_ANNOTATION: retry_token},
        env=env,
        read_only=False,
        backoff_limit=download.retries,
    )


def build_verify_job(model: Model, *, settings: OperatorSettings, retry_token: str) -> Manifest:
    """The Job that checks a ``source.pvc`` Model's weights in place, with the claim read-only."""
    if model.spec.source.pvc is None:
        raise ValueError(f"Model {model.metadata.name!r}: only pvc sources are verified in place")
    env = [
        env_var("MODELFLEET_MODE", "verify"),
        env_var("MODELFLEET_SOURCE", "pvc"),
        env_var("MODELFLEET_MODEL_ROOT", settings.model_root),
        env_var("MODELFLEET_MODEL_PATH", pvc_model_path(settings, model)),
        env_var("MODELFLEET_VERIFY", model.spec.download.verify),
        *_common_env(model),
    ]
    name = verify_job_name(model, verify_revision_key(model), retry_token)
    return _job(
        model,
        settings=settings,
        name=name,
        component="verify",
        annotations={RETRY_TOKEN_ANNOTATION: retry_token},
        env=env,
        read_only=True,
        backoff_limit=model.spec.download.retries,
    )
