"""The training Job of a FinetuneJob: ``python -m modelfleet.trainer`` on the base Model's
volume, with the dataset mounted as a file, or fetched from a huggingface dataset repository by
an init container of the downloader image."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, NamedTuple

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
    job_pod,
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
from modelfleet.contracts.download import DownloaderSettings, Mode, Source
from modelfleet.contracts.training import Method, TrainerSettings
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
    task = DownloaderSettings(
        mode=Mode.DOWNLOAD,
        source=Source.HUGGINGFACE_DATASET,
        repo=dataset.repo,
        revision=dataset.revision,
        model_root=Path(DATASET_MOUNT),
        allow_patterns=[literal_pattern(dataset.file)],
        # The volume is this pod's emptyDir: nothing outlives the pod to be made durable.
        fsync=False,
        endpoint=dataset.endpoint or None,
    )
    env = [
        *downloader_env(task),
        *hub_access_env(dataset.endpoint, dataset.token_secret_ref),
    ]
    # An init container: the pod's limit is the trainer's, which covers the dataset volume.
    resources = with_ephemeral_storage(
        FETCH_RESOURCES, request=FETCH_EPHEMERAL_REQUEST, limit=f"{LOG_HEADROOM_GIB}Gi"
    )
    return downloader_container(
        FETCH_CONTAINER_NAME, image, env, resources, volume_mount(DATASET_VOLUME, DATASET_MOUNT)
    )


class _Dataset(NamedTuple):
    """Where the trainer finds the dataset: a volume, its settings, the containers that fill
    it (none for a mounted file)."""

    volume: dict[str, Any]
    path: str
    repo: str = ""
    file: str = ""
    init_containers: tuple[dict[str, Any], ...] = ()

    def hub_settings(self) -> dict[str, Any]:
        """The trainer's settings naming the fetched repository and file; none for a mount."""
        return {"dataset_repo": self.repo, "dataset_file": self.file} if self.repo else {}


def _dataset(job: FinetuneJob, settings: OperatorSettings) -> _Dataset:
    dataset = job.spec.dataset
    if dataset.config_map is not None:
        volume = {"name": DATASET_VOLUME, "configMap": {"name": dataset.config_map.name}}
        return _Dataset(volume, f"{DATASET_MOUNT}/{dataset.config_map.key}")
    if dataset.pvc is not None:
        volume = claim_volume(dataset.pvc.claim_name, read_only=True) | {"name": DATASET_VOLUME}
        return _Dataset(volume, f"{DATASET_MOUNT}{dataset.pvc.path}")
    if dataset.huggingface is not None:
        hub = dataset.huggingface
        volume = {"name": DATASET_VOLUME, "emptyDir": {"sizeLimit": DATASET_SIZE_LIMIT}}
        fetch = _fetch_dataset_container(hub, settings.downloader_image)
        return _Dataset(volume, DATASET_MOUNT, hub.repo, hub.file, (fetch,))
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
    dataset = _dataset(job, settings)
    task = TrainerSettings(
        model_path=Path(base_path),
        output_dir=Path(output_dir),
        dataset_path=Path(dataset.path),
        **dataset.hub_settings(),
        method=Method(spec.method),
        **params.model_dump(),
        merge=spec.merge,
        base_repo=base_repo,
        base_revision=base_revision,
        status_target=f"{namespace}/{job.metadata.name}",
        termination_log=Path(TERMINATION_LOG),
    )
    env = [
        *task.to_env(),
        env_var("HOME", TMP_PATH),
        env_var("HF_HOME", f"{TMP_PATH}/hf"),
        env_var("HF_HUB_OFFLINE", "1"),
        env_var("TRANSFORMERS_OFFLINE", "1"),
    ]
    volumes = [
        claim_volume(base_claim, read_only=True) | {"name": BASE_VOLUME},
        claim_volume(base_claim, read_only=False) | {"name": OUTPUT_VOLUME},
        dataset.volume,
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
    placement = job_pod(spec, settings.defaults)
    pod_job = job_spec(
        service_account=settings.job_service_account,
        pod_labels=finetune_labels(job),
        container=container,
        volumes=volumes,
        backoff_limit=spec.retries,
        active_deadline_seconds=spec.active_deadline_seconds,
        placement=placement,
        init_containers=list(dataset.init_containers),
    )
    manifest: Manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": training_job_name(job),
            "namespace": namespace,
            "labels": finetune_labels(job),
            **({"annotations": placement.annotations()} if placement.from_defaults else {}),
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
