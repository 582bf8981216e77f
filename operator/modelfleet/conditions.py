"""Condition types and reasons: the one place every status reason is spelled.

Conditions follow the kstatus conventions (``Ready``, ``Reconciling``, ``Stalled``) plus the
domain conditions ``Downloaded`` and ``Serving`` for a Model and ``Running``, ``Succeeded`` and
``Failed`` for a FinetuneJob. Every transition is also emitted as an Event with the same reason.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ConditionType(StrEnum):
    """Condition types written into ``status.conditions``."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    DOWNLOADED = "Downloaded"
    SERVING = "Serving"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Reason(StrEnum):
    """Reasons for conditions and Events. CamelCase, stable: tools and alerts match on them."""

    # Progress
    PENDING = "Pending"
    RESOLVING = "Resolving"
    RESOLVED = "Resolved"
    DOWNLOADING = "Downloading"
    VERIFYING = "Verifying"
    DOWNLOADED = "Downloaded"
    ROLLING_OUT = "RollingOut"
    SERVING = "Serving"
    STOPPED = "Stopped"
    CACHE_ONLY = "CacheOnly"
    READY = "Ready"
    WAITING_FOR_REPLICAS = "WaitingForReplicas"
    APPLY_FAILED = "ApplyFailed"
    """The API server refused a child the operator writes; retried with backoff."""
    # Download failures (terminal after retries; also written by the downloader)
    REPO_NOT_FOUND = "RepoNotFound"
    GATED = "Gated"
    UNAUTHORIZED = "Unauthorized"
    REVISION_NOT_FOUND = "RevisionNotFound"
    INSUFFICIENT_STORAGE = "InsufficientStorage"
    VERIFICATION_FAILED = "VerificationFailed"
    INCOMPLETE = "Incomplete"
    DOWNLOAD_STALLED = "DownloadStalled"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    NETWORK_ERROR = "NetworkError"
    # Configuration the operator judges at runtime
    INVALID_SPEC = "InvalidSpec"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
    STORAGE_CLASS_NOT_FOUND = "StorageClassNotFound"
    CLAIM_NOT_FOUND = "ClaimNotFound"
    CLAIM_PENDING = "ClaimPending"
    STORAGE_EXPANDING = "StorageExpanding"
    """spec.storage.size grew: the claim was asked to grow and its volume has not yet."""
    STORAGE_NOT_EXPANDABLE = "StorageNotExpandable"
    """spec.storage.size grew, but the claim's StorageClass does not allow expansion."""
    FINETUNE_JOB_NOT_FOUND = "FinetuneJobNotFound"
    FINETUNE_NOT_SUCCEEDED = "FinetuneNotSucceeded"
    # Serving failures
    IMAGE_PULL_FAILED = "ImagePullFailed"
    UNSCHEDULABLE = "Unschedulable"
    CRASH_LOOP = "CrashLoop"
    ROLLOUT_STALLED = "RolloutStalled"
    READ_WRITE_ONCE_MULTI_REPLICA = "ReadWriteOnceMultiReplica"
    VOLUME_MOUNT_FAILED = "VolumeMountFailed"
    """A pod's volume cannot be attached or mounted (FailedAttachVolume, FailedMount)."""
    """Replicas spread over nodes cannot all attach one ReadWriteOnce volume."""
    CHILD_CONFLICT = "ChildConflict"
    """An object the Model would create exists and is not modelfleet's: nothing is touched."""
    SMOKE_TEST_FAILED = "SmokeTestFailed"
    """A new serving pod's engine started but did not answer its smoke completion."""
    WEIGHTS_INVALID = "WeightsInvalid"
    """A serving pod's verify-weights init container refused the weights on the volume."""
    # Fine-tuning
    BASE_MODEL_NOT_READY = "BaseModelNotReady"
    DATASET_INVALID = "DatasetInvalid"
    OUT_OF_MEMORY = "OutOfMemory"
    TRAINING_FAILED = "TrainingFailed"
    TRAINING = "Training"
    SUCCEEDED = "Succeeded"
    PROMOTED = "Promoted"


# Download failures after which another attempt cannot help: the Job is not retried and the
# Model goes Stalled at once.
PERMANENT_DOWNLOAD_REASONS: frozenset[Reason] = frozenset(
    {
        Reason.REPO_NOT_FOUND,
        Reason.GATED,
        Reason.UNAUTHORIZED,
        Reason.REVISION_NOT_FOUND,
        Reason.INSUFFICIENT_STORAGE,
    }
)


# Reasons that mean the Model will not progress without a change: Stalled=True, Warning Events.
STALLED_REASONS: frozenset[Reason] = PERMANENT_DOWNLOAD_REASONS | {
    Reason.VERIFICATION_FAILED,
    Reason.INCOMPLETE,
    Reason.DOWNLOAD_STALLED,
    Reason.BACKOFF_LIMIT_EXCEEDED,
    Reason.DEADLINE_EXCEEDED,
    Reason.NETWORK_ERROR,
    Reason.INVALID_SPEC,
    Reason.SECRET_NOT_FOUND,
    Reason.SECRET_KEY_NOT_FOUND,
    Reason.STORAGE_CLASS_NOT_FOUND,
    Reason.CLAIM_NOT_FOUND,
    Reason.FINETUNE_JOB_NOT_FOUND,
    Reason.IMAGE_PULL_FAILED,
    Reason.CRASH_LOOP,
    Reason.SMOKE_TEST_FAILED,
    Reason.WEIGHTS_INVALID,
    Reason.CHILD_CONFLICT,
    Reason.READ_WRITE_ONCE_MULTI_REPLICA,
    Reason.ROLLOUT_STALLED,
    Reason.DATASET_INVALID,
    Reason.OUT_OF_MEMORY,
}


# Reasons that need someone's attention although nothing failed for good: the Model or
# FinetuneJob waits on something outside its control.
ATTENTION_REASONS: frozenset[Reason] = frozenset(
    {
        Reason.UNSCHEDULABLE,
        Reason.CLAIM_PENDING,
        Reason.STORAGE_NOT_EXPANDABLE,
        Reason.VOLUME_MOUNT_FAILED,
        Reason.BASE_MODEL_NOT_READY,
        Reason.APPLY_FAILED,
    }
)


def event_type(reason: str, *, failed: bool = False) -> str:
    """The type of the Event that announces ``reason``: "Warning" for a stall, a failure or
    something that needs attention, "Normal" otherwise."""
    warning = failed or reason in STALLED_REASONS or reason in ATTENTION_REASONS
    return "Warning" if warning else "Normal"


def set_condition(
    conditions: list[dict[str, Any]],
    type_: ConditionType,
    status: bool,
    reason: Reason,
    message: str,
    *,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """A copy of ``conditions`` with one condition set; its transition time moves only when its
    status changes, so recomputing an unchanged state yields identical conditions."""
    status_text = "True" if status else "False"
    previous = next((c for c in conditions if c.get("type") == type_), None)
    since = now
    if previous is not None and previous.get("status") == status_text:
        since = previous.get("lastTransitionTime", now)
    condition = {
        "type": str(type_),
        "status": status_text,
        "reason": str(reason),
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
    return [c for c in conditions if c.get("type") != type_] + [condition]


def find_condition(conditions: list[dict[str, Any]], type_: ConditionType) -> dict[str, Any] | None:
    """The condition of a type, if present."""
    return next((c for c in conditions if c.get("type") == type_), None)
