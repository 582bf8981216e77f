"""The training Job of a FinetuneJob: ``python -m modelfleet.trainer`` on the base Model's
volume, with the dataset mounted as a file, or fetched from a huggingface dataset repository by
an init container of the downloader image."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from modelfleet.api.v1alpha1 import API_VERSION, FinetuneJob
from modelfleet.api.v1alpha1.finetunejob import HuggingFaceDataset
from modelfleet.builders.common import (
    COMPONENT_LABEL,
    LOG_HEADROOM_GIB,
    MANAGED_BY,
    TMP_PATH,
    TMP_VOLUME,
    Manifest,
    claim_volume,
    container_security_context,
    env_var,
    job_spec,
    scratch_gib,
    stamp_spec_hash,
    tmp_volume,
    volume_mount,
    with_ephemeral_storage,
)
from modelfleet.builders.download import DEFAULT_RESOURCES as FETCH_RESOURCES
from modelfleet.builders.download import EPHEMERAL_REQUEST as FETCH_EPHEMERAL_REQUEST
from modelfleet.builders.download import downloader_container, downloader_env, hub_access_env
from modelfleet.builders.naming import finetune_output_dir
from modelfleet.settings import OperatorSettings

FINETUNE_LABEL = "modelfleet.io/finetunejob"
CONTAINER_NAME = "train"
FETCH_CONTAINER_NAME = "fetch-dataset"
TRAINER_COMMAND = ["python", "-m", "modelfleet.trainer"]
TERMINATION_LOG = "/dev/termination-log"
BASE_VOLUME = "base"
OUTPUT_VOLUME = "output"
DATASET_VOLUME = "dataset"
OUTPUT_MOUNT = "/output"
DATASET_MOUNT = "/dataset"
DEFAULT_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "1", "memory": "4Gi"},
    "limits": {"memory": "16Gi"},
}
# The trainer's /tmp holds little (the hub is offline); its limit covers the pod's emptyDirs.
EPHEMERAL_REQUEST = "1Gi"
TMP_SIZE_LIMIT = "8Gi"


def training_job_name(job: FinetuneJob) -> str:
    """The training Job's name: the FinetuneJob's (a DNS-1035 label of at most 48 characters,
    immutable), plus a suffix; never truncated, so two FinetuneJobs never share a Job."""
    return f"{job.metadata.name}-train"


def finetune_labels(job: FinetuneJob) -> dict[str, str]:
    """Labels of the training Job and its pod."""
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/name": "modelfleet",
        "app.kubernetes.io/instance": job.metadata.name,
        COMPONENT_LABEL: "train",
        FINETUNE_LABEL: job.metadata.name,
    }


# The most a hub dataset may take on the node's disk: the pod is evicted, not the node filled.
DATASET_SIZE_LIMIT = "20Gi"


def literal_pattern(path: str) -> str:
    """A glob pattern (fnmatch, as the hub client filters files) that matches ``path`` only:
    every glob character in a bracket, so a file named "*" never fetches the repository."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def _fetch_dataset_container(dataset: HuggingFaceDataset, image: str) -> dict[str, Any]:
    """The init container that downloads and verifies the dataset file into the dataset
    volume, as ``<repo>/<commit>/<file>`` with a manifest, before training starts."""
    env = [
        env_var("MODELFLEET_MODE", "download"),
        env_var("MODELFLEET_SOURCE", "huggingface-dataset"),
        env_var("MODELFLEET_REPO", dataset.repo),
        env_var("MODELFLEET_REVISION", dataset.revision),
        env_var("MODELFLEET_MODEL_ROOT", DATASET_MOUNT),
        env_var("MODELFLEET_ALLOW_PATTERNS", json.dumps([literal_pattern(dataset.file)])),
        # The volume is this pod's emptyDir: nothing outlives the pod to be made durable.
        env_var("MODELFLEET_FSYNC", "false"),
        *downloader_env(),
        *hub_access_env(dataset.endpoint, dataset.token_secret_ref),
    ]
    # An init container: the pod's limit is the trainer's, which covers the dataset volume.
    resources = with_ephemeral_storage(
        FETCH_RESOURCES, request=FETCH_EPHEMERAL_REQUEST, limit=f"{LOG_HEADROOM_GIB}Gi"
    )
    return downloader_container(
        FETCH_CONTAINER_NAME, image, env, resources, volume_mount(DATASET_VOLUME, DATASET_MOUNT)
    )


def _dataset(
    job: FinetuneJob, settings: OperatorSettings
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The dataset's volume, the trainer's environment that finds the file, and the init
    containers that fetch it (none for a mounted file)."""
    dataset = job.spec.dataset
    if dataset.config_map is not None:
        volume = {"name": DATASET_VOLUME, "configMap": {"name": dataset.config_map.name}}
        path = f"{DATASET_MOUNT}/{dataset.config_map.key}"
        return volume, [env_var("MODELFLEET_DATASET_PATH", path)], []
    if dataset.pvc is not None:
        volume = claim_volume(dataset.pvc.claim_name, read_only=True) | {"name": DATASET_VOLUME}
        path = f"{DATASET_MOUNT}{dataset.pvc.path}"
        return volume, [env_var("MODELFLEET_DATASET_PATH", path)], []
    if dataset.huggingface is not None:
        hub = dataset.huggingface
        volume = {"name": DATASET_VOLUME, "emptyDir": {"sizeLimit": DATASET_SIZE_LIMIT}}
        env = [
            env_var("MODELFLEET_DATASET_PATH", DATASET_MOUNT),
            env_var("MODELFLEET_DATASET_REPO", hub.repo),
            env_var("MODELFLEET_DATASET_FILE", hub.file),
        ]
        return volume, env, [_fetch_dataset_container(hub, settings.downloader_image)]
    raise ValueError("the dataset names no source")


def build_training_job(
    job: FinetuneJob,
    *,
    settings: OperatorSettings,
    base_claim: str,
    base_path: str,
    base_repo: str,
    base_revision: str,
) -> Manifest:
    """The batch/v1 Job that trains ``job`` on the weights at ``base_path``."""
    spec = job.spec
    params = spec.hyperparameters
    namespace = job.metadata.namespace or ""
    output_dir = finetune_output_dir(settings, namespace, job.metadata.name).replace(
        settings.model_root.rstrip("/"), OUTPUT_MOUNT, 1
    )
    dataset_volume, dataset_env, init_containers = _dataset(job, settings)
    env = [
        env_var("MODELFLEET_MODEL_PATH", base_path),
        env_var("MODELFLEET_OUTPUT_DIR", output_dir),
        *dataset_env,
        env_var("MODELFLEET_METHOD", spec.method),
        env_var("MODELFLEET_EPOCHS", str(params.epochs)),
        env_var("MODELFLEET_BATCH_SIZE", str(params.batch_size)),
        env_var("MODELFLEET_LEARNING_RATE", str(params.learning_rate)),
        env_var("MODELFLEET_MAX_SEQ_LENGTH", str(params.max_seq_length)),
        env_var("MODELFLEET_LORA_RANK", str(params.lora_rank)),
        env_var("MODELFLEET_LORA_ALPHA", str(params.lora_alpha)),
        env_var("MODELFLEET_LORA_DROPOUT", str(params.lora_dropout)),
        env_var("MODELFLEET_GRADIENT_ACCUMULATION", str(params.gradient_accumulation)),
        env_var("MODELFLEET_MERGE", "true" if spec.merge else "false"),
        env_var("MODELFLEET_BASE_REPO", base_repo),
        env_var("MODELFLEET_BASE_REVISION", base_revision),
        env_var("MODELFLEET_STATUS_TARGET", f"{namespace}/{job.metadata.name}"),
        env_var("MODELFLEET_TERMINATION_LOG", TERMINATION_LOG),
        env_var("HOME", TMP_PATH),
        env_var("HF_HOME", f"{TMP_PATH}/hf"),
        env_var("HF_HUB_OFFLINE", "1"),
        env_var("TRANSFORMERS_OFFLINE", "1"),
    ]
    volumes = [
        claim_volume(base_claim, read_only=True) | {"name": BASE_VOLUME},
        claim_volume(base_claim, read_only=False) | {"name": OUTPUT_VOLUME},
        dataset_volume,
        tmp_volume(TMP_SIZE_LIMIT),
    ]
    resources = spec.resources.to_wire() if spec.resources else copy.deepcopy(DEFAULT_RESOURCES)
    if spec.gpu.count > 0:
        for bucket in ("limits", "requests"):
            resources.setdefault(bucket, {})[spec.gpu.resource_name] = str(spec.gpu.count)
    resources = with_ephemeral_storage(
        resources,
        request=EPHEMERAL_REQUEST,
        limit=f"{scratch_gib(volumes) + LOG_HEADROOM_GIB}Gi",
    )
    container = {
        "name": CONTAINER_NAME,
        "image": spec.image or settings.trainer_image,
        "command": list(TRAINER_COMMAND),
        "env": env,
        "resources": resources,
        "securityContext": container_security_context(read_only_root=True),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            # The base weights are read-only; the same claim is mounted again for the output.
            volume_mount(BASE_VOLUME, settings.model_root, read_only=True),
            volume_mount(OUTPUT_VOLUME, OUTPUT_MOUNT),
            volume_mount(DATASET_VOLUME, DATASET_MOUNT, read_only=True),
            volume_mount(TMP_VOLUME, TMP_PATH),
        ],
    }
    pod_job = job_spec(
        service_account=settings.job_service_account,
        pod_labels=finetune_labels(job),
        container=container,
        volumes=volumes,
        backoff_limit=spec.retries,
        active_deadline_seconds=spec.active_deadline_seconds,
        init_containers=init_containers,
    )
    manifest: Manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": training_job_name(job),
            "namespace": namespace,
            "labels": finetune_labels(job),
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "FinetuneJob",
                    "name": job.metadata.name,
                    "uid": job.metadata.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": pod_job,
    }
    return stamp_spec_hash(manifest)
