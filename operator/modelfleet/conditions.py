"""Condition types and reasons: the one place every status reason is spelled.

Conditions follow the kstatus conventions (``Ready``, ``Reconciling``, ``Stalled``) plus the
domain conditions ``Downloaded`` and ``Serving`` for a Model and ``Running``, ``Succeeded`` and
``Failed`` for a FinetuneJob. Every transition is also emitted as an Event with the same reason.
"""

from __future__ import annotations

from enum import StrEnum


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
    DOWNLOADING = "Downloading"
    VERIFYING = "Verifying"
    DOWNLOADED = "Downloaded"
    ROLLING_OUT = "RollingOut"
    SERVING = "Serving"
    STOPPED = "Stopped"
    CACHE_ONLY = "CacheOnly"
    READY = "Ready"
    WAITING_FOR_REPLICAS = "WaitingForReplicas"
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
    FINETUNE_JOB_NOT_FOUND = "FinetuneJobNotFound"
    FINETUNE_NOT_SUCCEEDED = "FinetuneNotSucceeded"
    # Serving failures
    IMAGE_PULL_FAILED = "ImagePullFailed"
    UNSCHEDULABLE = "Unschedulable"
    CRASH_LOOP = "CrashLoop"
    ROLLOUT_STALLED = "RolloutStalled"
    READ_WRITE_ONCE_MULTI_REPLICA = "ReadWriteOnceMultiReplica"
    # Fine-tuning
    BASE_MODEL_NOT_READY = "BaseModelNotReady"
    DATASET_INVALID = "DatasetInvalid"
    OUT_OF_MEMORY = "OutOfMemory"
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
