"""The Jobs that download weights into the claim, or verify weights already on one.

Both run ``python -m modelfleet.downloader``, configured only through environment variables
(``modelfleet.contracts.download``). The result and its typed reason come back through the
termination message; exit code 2 means no retry can help, so the Job fails at once.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, NamedTuple

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
    job_pod,
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
    resolve_job_name,
    verify_job_name,
    verify_revision_key,
    weights_claim_name,
)
from modelfleet.contracts.download import DownloaderSettings, Mode, Source, VerifyMode
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
    component: Literal["download", "verify", "resolve"],
    annotations: dict[str, str],
    env: list[dict[str, Any]],
    claim: Literal["read-write", "read-only"] | None,
    backoff_limit: int,
) -> Manifest:
    """The Job shape download, verify and resolve share; ``claim`` says how the weights claim
    is mounted, if at all."""
    read_only = claim == "read-only"
    volumes = [tmp_volume(TMP_SIZE_LIMIT)]
    if claim is not None:
        volumes.insert(0, claim_volume(weights_claim_name(model), read_only=read_only))
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
        volume_mount(WEIGHTS_VOLUME, settings.model_root, read_only=read_only) if claim else None,
    )
    placement = job_pod(model.spec.download, settings.defaults)
    spec = job_spec(
        service_account=settings.job_service_account,
        pod_labels=labels(model, component),
        container=container,
        volumes=volumes,
        backoff_limit=backoff_limit,
        active_deadline_seconds=model.spec.download.active_deadline_seconds,
        placement=placement,
    )
    manifest: Manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(
            model, name, component, annotations=annotations | placement.annotations()
        ),
        "spec": spec,
    }
    return stamp_spec_hash(manifest)


def downloader_container(
    name: str,
    image: str,
    env: list[dict[str, Any]],
    resources: dict[str, Any],
    target: dict[str, Any] | None,
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
        "volumeMounts": [*([target] if target else []), volume_mount(TMP_VOLUME, TMP_PATH)],
    }


def downloader_env(task: DownloaderSettings) -> list[dict[str, Any]]:
    """A downloader container's environment: its task, its result to the termination log, its
    scratch files under /tmp, and no telemetry."""
    return [
        *task.model_copy(update={"termination_log": Path(TERMINATION_LOG)}).to_env(),
        *(env_var(name, value) for name, value in _SCRATCH_ENV),
        env_var("HF_HUB_DISABLE_TELEMETRY", "1"),
    ]


def hub_access_env(
    endpoint: str | None, token_ref: SecretKeyRef | None, token_env: str = "HF_TOKEN"
) -> list[dict[str, Any]]:
    """What a hub source needs besides the task's settings: the token, read from its Secret at
    run time, and plain HTTP (not Xet storage) for a mirror."""
    env: list[dict[str, Any]] = []
    if endpoint:
        # Mirrors and test hubs speak the plain HTTP protocol, not Xet storage.
        env.append(env_var("HF_HUB_DISABLE_XET", "1"))
    if token_ref is not None:
        env.append(secret_env_var(token_env, token_ref.name, token_ref.key))
    return env


def _status_target(model: Model) -> str:
    return f"{model_namespace(model)}/{model_name(model)}"


class _Hub(NamedTuple):
    """A hub source as the downloader is given it."""

    source: Source
    task: dict[str, Any]
    """The settings that name the repository, its files and the hub."""
    env: list[dict[str, Any]]
    """The token (from its Secret) and the protocol switches."""


def _hub(model: Model, revision: str, settings: OperatorSettings) -> _Hub:
    """The repository, its files and the hub (the Model's endpoint, else the installation's
    mirror) as downloader settings, and the token's environment."""
    source = model.spec.source
    if source.huggingface is not None:
        hf = source.huggingface
        kind, repo, token_env = Source.HUGGINGFACE, hf.repo, "HF_TOKEN"
        allow, ignore, endpoint, token_ref = (
            hf.allow_patterns,
            hf.ignore_patterns,
            hf.endpoint or settings.defaults.huggingface_endpoint,
            hf.token_secret_ref,
        )
    elif source.modelscope is not None:
        ms = source.modelscope
        kind, repo, token_env = Source.MODELSCOPE, ms.repo, "MODELSCOPE_API_TOKEN"
        allow, ignore, endpoint, token_ref = None, None, None, ms.token_secret_ref
    else:
        raise ValueError(
            f"Model {model.metadata.name!r}: only huggingface and modelscope sources download"
        )
    download = model.spec.download
    task = {
        "source": kind,
        "repo": repo,
        "revision": revision,
        "allow_patterns": allow or None,
        "ignore_patterns": ignore or None,
        "retries": IN_PROCESS_ATTEMPTS,
        "backoff_initial_seconds": download.backoff.initial_seconds,
        "backoff_max_seconds": download.backoff.max_seconds,
        "stall_timeout_seconds": download.stall_timeout_seconds,
        "endpoint": endpoint or None,
    }
    return _Hub(kind, task, hub_access_env(endpoint, token_ref, token_env))


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
    hub = _hub(model, revision, settings)
    task = DownloaderSettings(
        mode=Mode.DOWNLOAD,
        model_root=Path(settings.model_root),
        verify=VerifyMode(model.spec.download.verify),
        keep_revisions=model.spec.storage.keep_revisions,
        protected_paths=[Path(path) for path in protected_paths],
        status_target=_status_target(model),
        **hub.task,
    )
    name = download_job_name(model, download_revision_key(model, revision), retry_token)
    return _job(
        model,
        settings=settings,
        name=name,
        component="download",
        annotations={REVISION_ANNOTATION: revision, RETRY_TOKEN_ANNOTATION: retry_token},
        env=[*downloader_env(task), *hub.env],
        claim="read-write",
        backoff_limit=model.spec.download.retries,
    )


def build_resolve_job(
    model: Model, *, settings: OperatorSettings, revision: str, retry_token: str
) -> Manifest:
    """The Job that resolves ``revision`` to its commit and the size of the files the Model
    selects, without a volume: the weights claim is sized from its result."""
    hub = _hub(model, revision, settings)
    task = DownloaderSettings(mode=Mode.RESOLVE, **hub.task)
    return _job(
        model,
        settings=settings,
        name=resolve_job_name(model, download_revision_key(model, revision), retry_token),
        component="resolve",
        annotations={REVISION_ANNOTATION: revision, RETRY_TOKEN_ANNOTATION: retry_token},
        env=[*downloader_env(task), *hub.env],
        claim=None,
        backoff_limit=model.spec.download.retries,
    )


def build_verify_job(model: Model, *, settings: OperatorSettings, retry_token: str) -> Manifest:
    """The Job that checks a ``source.pvc`` Model's weights in place, with the claim read-only."""
    if model.spec.source.pvc is None:
        raise ValueError(f"Model {model.metadata.name!r}: only pvc sources are verified in place")
    task = DownloaderSettings(
        mode=Mode.VERIFY,
        source=Source.PVC,
        model_root=Path(settings.model_root),
        model_path=Path(pvc_model_path(settings, model)),
        verify=VerifyMode(model.spec.download.verify),
        status_target=_status_target(model),
    )
    env = downloader_env(task)
    name = verify_job_name(model, verify_revision_key(model), retry_token)
    return _job(
        model,
        settings=settings,
        name=name,
        component="verify",
        annotations={RETRY_TOKEN_ANNOTATION: retry_token},
        env=env,
        claim="read-only",
        backoff_limit=model.spec.download.retries,
    )
