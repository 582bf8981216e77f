"""Reading a Job's outcome: running, succeeded with a result, or failed with a typed reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal

from modelfleet.builders.naming import is_commit_id
from modelfleet.conditions import Reason
from modelfleet.contracts.results import DownloadResult, Result, ResultLine, read_result

Manifest = dict[str, Any]

_JOB_REASONS = {
    "BackoffLimitExceeded": Reason.BACKOFF_LIMIT_EXCEEDED,
    "DeadlineExceeded": Reason.DEADLINE_EXCEEDED,
}


@dataclass(frozen=True)
class JobOutcome(Generic[Result]):
    """What a download, verify or training Job came to."""

    state: Literal["Running", "Succeeded", "Failed"]
    result: Result | None
    """The program's one-line JSON result (from the termination message), when it wrote one."""
    reason: Reason | None = None
    message: str = ""


def _finished_condition(job: Manifest) -> dict[str, Any] | None:
    for condition in job.get("status", {}).get("conditions", []):
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return dict(condition)
    return None


def _termination_result(pod: Manifest, kind: type[Result]) -> Result | None:
    # The main container's result first; a failed init container (a dataset that could not be
    # fetched) leaves only its own.
    pod_status = pod.get("status", {})
    statuses = [
        *pod_status.get("containerStatuses", []),
        *pod_status.get("initContainerStatuses", []),
    ]
    for status in statuses:
        message = status.get("state", {}).get("terminated", {}).get("message", "")
        result = read_result(message, kind)
        if result is not None:
            return result
    return None


def _newest(pods: list[Manifest], phase: str) -> Manifest | None:
    matching = [p for p in pods if p.get("status", {}).get("phase") == phase]
    matching.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
    return matching[-1] if matching else None


def _invalid_revision(result: ResultLine | None) -> str | None:
    """Why the result's ``resolvedRevision`` cannot be used, if it is there and not a commit id.

    The revision becomes a path on the weights volume: a hub that answers ``../other/model``
    or ``/abs/path`` must not choose which directory is served.
    """
    revision = getattr(result, "resolved_revision", None)
    if revision is None or is_commit_id(revision):
        return None
    return (
        f"the Job reported resolvedRevision {str(revision)[:80]!r}, not 40 lowercase hex digits:"
        " refusing to use it as a path"
    )


def job_outcome(job: Manifest, pods: list[Manifest], kind: type[Result]) -> JobOutcome[Result]:
    """The outcome of ``job`` given its pods (those labelled ``job-name=<name>``), whose
    program reports a result line of ``kind``.

    A result whose ``resolvedRevision`` is not a commit id is a failure (VerificationFailed),
    and the value is dropped from the result, so it never reaches a path.
    """
    finished = _finished_condition(job)
    if finished is None:
        return JobOutcome("Running", None)
    pod = _newest(pods, "Succeeded" if finished["type"] == "Complete" else "Failed")
    result = _termination_result(pod, kind) if pod else None
    invalid = _invalid_revision(result)
    if invalid is not None and result is not None:
        result = result.model_copy(update={"resolved_revision": None})
        return JobOutcome("Failed", result, Reason.VERIFICATION_FAILED, invalid)
    if finished["type"] == "Complete":
        return JobOutcome("Succeeded", result)
    try:
        reason = Reason(result.reason if result else "")
    except ValueError:
        reason = _JOB_REASONS.get(finished.get("reason", ""), Reason.BACKOFF_LIMIT_EXCEEDED)
    message = (result.message if result else "") or finished.get("message") or "the Job failed"
    return JobOutcome("Failed", result, reason, str(message))


def download_outcome(job: Manifest, pods: list[Manifest]) -> JobOutcome[DownloadResult]:
    """The outcome of a download or verify Job."""
    return job_outcome(job, pods, DownloadResult)
