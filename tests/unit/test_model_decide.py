"""``decide`` returns everything a reconcile does; one row per condition reason it can reach.

Each row builds what ``observe`` would have read and checks the reason and status of one
condition, and the plan's other outputs (children to create, apply and delete, when to look
again). A last test reads ``decide.py`` and ``observe.py`` for every reason they name, so a
new reason cannot be added without a row here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from modelfleet.api.v1alpha1 import Model
from modelfleet.builders.common import MANAGED_BY, MANAGED_BY_LABEL, MODEL_LABEL
from modelfleet.builders.naming import model_path, weights_claim_name
from modelfleet.builders.serving import INIT_CONTAINER_NAME, SMOKE_TEST_CONDITION
from modelfleet.conditions import ConditionType, Reason
from modelfleet.contracts.results import DownloadResult
from modelfleet.reconcile.model.decide import Plan, decide
from modelfleet.reconcile.model.observe import Observed, current_job_name
from modelfleet.settings import OperatorSettings
from modelfleet.smoketest import SmokeResult
from tests.support.cluster import REPO_ROOT

pytestmark = pytest.mark.unit

SETTINGS = OperatorSettings(downloader_image="downloader:test", model_root="/models")
NOW = "2026-01-01T01:00:00Z"
CREATED = "2026-01-01T00:00:00Z"
SHA = "0123456789abcdef0123456789abcdef01234567"
OLD_SHA = "f" * 40


def model(with_serving: bool = True, **spec: Any) -> Model:
    body: dict[str, Any] = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "tiny", "namespace": "team-a", "uid": "u1", "generation": 1},
        "spec": {"source": {"huggingface": {"repo": "org/tiny"}}, **spec},
    }
    if with_serving:
        body["spec"].setdefault("serving", {"replicas": 1})
    return Model.model_validate(body)


def bound_claim(m: Model) -> dict[str, Any]:
    labels = {MANAGED_BY_LABEL: MANAGED_BY, MODEL_LABEL: m.metadata.name}
    return {
        "metadata": {"name": weights_claim_name(m), "labels": labels},
        "status": {"phase": "Bound"},
    }


def job(m: Model, finished: str | None = None, reason: str = "") -> dict[str, Any]:
    conditions = (
        [] if finished is None else [{"type": finished, "status": "True", "reason": reason}]
    )
    return {"metadata": {"name": current_job_name(m)}, "status": {"conditions": conditions}}


def job_pod(phase: str, result: DownloadResult | None) -> dict[str, Any]:
    message = result.line() if result else ""
    terminated = {"exitCode": 0 if phase == "Succeeded" else 2, "message": message}
    return {
        "metadata": {"name": "dl-pod", "creationTimestamp": CREATED},
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "download", "state": {"terminated": terminated}}],
        },
    }


def downloaded(m: Model, revision: str = SHA) -> Observed:
    """The claim bound and the current Job done: the weights of ``revision`` are verified."""
    result = DownloadResult(
        result="Succeeded", reason=Reason.DOWNLOADED, resolved_revision=revision
    )
    return Observed(
        claim=bound_claim(m),
        job=job(m, "Complete"),
        job_pods=[job_pod("Succeeded", result)],
        other_jobs=[{"metadata": {"name": "tiny-dl-older"}}],
    )


def failed(
    m: Model, result: DownloadResult | None, reason: str = "BackoffLimitExceeded"
) -> Observed:
    return Observed(
        claim=bound_claim(m), job=job(m, "Failed", reason), job_pods=[job_pod("Failed", result)]
    )


def deployment(m: Model, revision: str = SHA, **status: Any) -> dict[str, Any]:
    """The Deployment decide would apply for ``revision``, as it runs with ``status``."""
    observed = downloaded(m, revision)
    [desired] = [d for d in decide(m, observed, SETTINGS, NOW).apply if d["kind"] == "Deployment"]
    live = copy.deepcopy(desired)
    live["metadata"]["generation"] = 1
    live["status"] = {"observedGeneration": 1, **status}
    return live


def serving(m: Model, pods: list[dict[str, Any]] | None = None, **status: Any) -> Observed:
    """Weights verified, the Deployment applied and running with ``status`` and ``pods``."""
    observed = downloaded(m)
    observed.deployment = deployment(m, **status)
    observed.serving_pods = pods or []
    return observed


def pod(
    *,
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "tiny-abc", "annotations": {}},
        "status": {
            "podIP": "198.18.0.2",
            "containerStatuses": containers or [],
            "initContainerStatuses": init or [],
            "conditions": conditions or [],
        },
    }


def waiting(reason: str, restarts: int = 0) -> dict[str, Any]:
    return {
        "name": "vllm",
        "image": "vllm:test",
        "restartCount": restarts,
        "state": {"waiting": {"reason": reason, "message": f"{reason} happened"}},
    }


def finetune_model(merge: bool = True) -> tuple[Model, dict[str, Any]]:
    m = Model.model_validate(
        {
            "apiVersion": "modelfleet.io/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "tuned", "namespace": "team-a", "uid": "u2", "generation": 1},
            "spec": {"source": {"finetuneJob": {"name": "ft"}}, "serving": {"replicas": 1}},
        }
    )
    ftj = {
        "metadata": {"name": "ft", "uid": "1234-5678"},
        "spec": {"baseModel": {"name": "tiny"}, "merge": merge},
        "status": {"conditions": []},
    }
    return m, ftj


def with_download_phase(m: Model, phase: str) -> Model:
    m = m.model_copy(deep=True)
    m.status = m.status.model_validate({"download": {"phase": phase}})
    return m


@dataclass
class Row:
    """One reachable reason: the Model and what was observed, and what decide must say."""

    reason: Reason
    case: Callable[[], tuple[Model, Observed]]
    condition: ConditionType = ConditionType.READY
    status: str = "False"
    creates: list[str] = field(default_factory=list)
    requeues: bool = False
    check: Callable[[Plan], None] | None = None


def _config_error(reason: Reason) -> Callable[[], tuple[Model, Observed]]:
    def case() -> tuple[Model, Observed]:
        return model(), Observed(config_error=(reason, "from observe"), claim=None)

    return case


def _tiny(
    observed: Callable[[Model], Observed], **spec: Any
) -> Callable[[], tuple[Model, Observed]]:
    def case() -> tuple[Model, Observed]:
        m = model(**spec)
        return m, observed(m)

    return case


def _no_serving(observed: Callable[[Model], Observed]) -> Callable[[], tuple[Model, Observed]]:
    def case() -> tuple[Model, Observed]:
        m = model(with_serving=False)
        return m, observed(m)

    return case


def _running(m: Model) -> tuple[Model, Observed]:
    m = with_download_phase(m, "Downloading")
    return m, Observed(claim=bound_claim(m), job=job(m), job_pods=[])


def _pvc_running() -> tuple[Model, Observed]:
    m = model(source={"pvc": {"claimName": "weights", "path": "/tiny"}})
    return m, Observed(claim={"metadata": {"name": "weights"}}, job=job(m), job_pods=[])


def _unbound_claim(m: Model) -> Observed:
    claim = bound_claim(m) | {"status": {"phase": "Pending"}}
    claim["metadata"]["creationTimestamp"] = CREATED
    return Observed(claim=claim, claim_unbound=True)


def _rolling_out(m: Model) -> Observed:
    observed = downloaded(m)
    observed.deployment = deployment(m, OLD_SHA, replicas=1, readyReplicas=1, updatedReplicas=0)
    return observed


def _finetune(state: str) -> Callable[[], tuple[Model, Observed]]:
    def case() -> tuple[Model, Observed]:
        m, ftj = finetune_model(merge=state != "base-not-ready")
        if state == "missing":
            return m, Observed()
        if state in ("succeeded", "base-not-ready"):
            ftj["status"]["conditions"] = [{"type": "Succeeded", "status": "True"}]
        base = {"metadata": {"name": "tiny"}, "spec": {}, "status": {}}
        return m, Observed(finetune_job=ftj, finetune_base=base)

    return case


def _assert_rolled_to_the_verified_path(plan: Plan) -> None:
    [applied] = [a for a in plan.apply if a["kind"] == "Deployment"]
    assert applied["metadata"]["annotations"]["modelfleet.io/model-path"].endswith(SHA)


def _assert_old_jobs_deleted(plan: Plan) -> None:
    assert plan.delete_jobs == ["tiny-dl-older"]
    assert plan.status["modelPath"] == model_path(SETTINGS, "org/tiny", SHA)
    assert plan.status["revisions"][0]["revision"] == SHA


def _assert_gate_set(plan: Plan) -> None:
    [(name, gate)] = plan.pod_conditions
    assert (name, gate["type"], gate["status"]) == ("tiny-abc", SMOKE_TEST_CONDITION, "False")


def _assert_nothing_touched(plan: Plan) -> None:
    assert (plan.create, plan.apply, plan.delete_jobs) == ([], [], [])


def _assert_the_resolve_job_is_created(plan: Plan) -> None:
    [created] = plan.create
    assert created["metadata"]["labels"]["app.kubernetes.io/component"] == "resolve"
    volumes = created["spec"]["template"]["spec"]["volumes"]
    assert not [v for v in volumes if "persistentVolumeClaim" in v]  # no claim to size yet


MULTI_ATTACH = (
    "pod tiny-abc: FailedAttachVolume: Multi-Attach error for volume pvc-1: Volume is already"
    " used by pod(s) tiny-xyz"
)


def _volume_not_mounted(m: Model) -> Observed:
    observed = serving(m, [pod()], replicas=2, updatedReplicas=2, readyReplicas=1)
    observed.volume_problems = {"tiny-abc": MULTI_ATTACH}
    return observed


def _download_volume_not_mounted(m: Model) -> Observed:
    observed = Observed(claim=bound_claim(m), job=job(m), job_pods=[job_pod("Pending", None)])
    observed.volume_problems = {"dl-pod": "pod dl-pod: FailedMount: hostPath type check failed"}
    return observed


def _smoke_failed(m: Model) -> Observed:
    ready = [{"type": "ContainersReady", "status": "True"}]
    observed = serving(m, [pod(conditions=ready)], replicas=1, updatedReplicas=1)
    observed.smoke_results = {"tiny-abc": SmokeResult(False, "HTTP 500: engine error")}
    return observed


ROWS = [
    *(
        Row(reason, _config_error(reason), ConditionType.STALLED, "True", requeues=True)
        for reason in (
            Reason.SECRET_NOT_FOUND,
            Reason.SECRET_KEY_NOT_FOUND,
            Reason.STORAGE_CLASS_NOT_FOUND,
            Reason.CLAIM_NOT_FOUND,
        )
    ),
    Row(
        Reason.CHILD_CONFLICT,
        _tiny(lambda m: Observed(conflicts=["Service team-a/tiny"])),
        ConditionType.STALLED,
        "True",
        check=_assert_nothing_touched,
    ),
    Row(
        Reason.PENDING,
        _tiny(lambda m: Observed(), storage={"size": "1Gi"}),
        ConditionType.DOWNLOADED,
        creates=["PersistentVolumeClaim"],
        requeues=True,
    ),
    Row(
        Reason.RESOLVING,
        _tiny(lambda m: Observed()),
        ConditionType.DOWNLOADED,
        check=_assert_the_resolve_job_is_created,
    ),
    Row(
        Reason.READ_WRITE_ONCE_MULTI_REPLICA,
        _tiny(
            lambda m: Observed(),
            serving={"replicas": 2, "schedulingStrategy": "spread"},
            storage={"size": "1Gi"},
        ),
        ConditionType.STALLED,
        "True",
        check=_assert_nothing_touched,
    ),
    Row(Reason.CLAIM_PENDING, _tiny(_unbound_claim), ConditionType.DOWNLOADED),
    Row(Reason.DOWNLOADING, lambda: _running(model()), ConditionType.DOWNLOADED),
    Row(Reason.VERIFYING, _pvc_running, ConditionType.DOWNLOADED),
    Row(
        Reason.REPO_NOT_FOUND,
        _tiny(
            lambda m: failed(
                m, DownloadResult(result="Failed", reason="RepoNotFound", message="no such repo")
            )
        ),
        ConditionType.STALLED,
        "True",
    ),
    Row(
        Reason.BACKOFF_LIMIT_EXCEEDED,
        _tiny(lambda m: failed(m, None)),
        ConditionType.STALLED,
        "True",
    ),
    Row(
        Reason.DEADLINE_EXCEEDED,
        _tiny(lambda m: failed(m, None, "DeadlineExceeded")),
        ConditionType.STALLED,
        "True",
    ),
    Row(
        Reason.VERIFICATION_FAILED,
        _tiny(lambda m: downloaded(m, "../../other/model")),
        ConditionType.STALLED,
        "True",
    ),
    Row(
        Reason.DOWNLOADED,
        _tiny(downloaded),
        ConditionType.DOWNLOADED,
        "True",
        check=_assert_old_jobs_deleted,
    ),
    Row(Reason.CACHE_ONLY, _no_serving(downloaded), ConditionType.SERVING),
    Row(
        Reason.READY,
        _tiny(lambda m: serving(m, replicas=1, readyReplicas=1, updatedReplicas=1)),
        ConditionType.READY,
        "True",
    ),
    Row(
        Reason.SERVING,
        _tiny(lambda m: serving(m, replicas=1, readyReplicas=1, updatedReplicas=1)),
        ConditionType.SERVING,
        "True",
    ),
    Row(Reason.STOPPED, _tiny(serving, serving={"replicas": 0}), ConditionType.SERVING),
    Row(
        Reason.WAITING_FOR_REPLICAS,
        _tiny(lambda m: serving(m, replicas=1, updatedReplicas=1)),
        ConditionType.SERVING,
    ),
    Row(
        Reason.ROLLING_OUT,
        _tiny(_rolling_out),
        ConditionType.SERVING,
        "True",
        check=_assert_rolled_to_the_verified_path,
    ),
    Row(
        Reason.WEIGHTS_INVALID,
        _tiny(
            lambda m: serving(
                m,
                [
                    pod(
                        init=[
                            {
                                "name": INIT_CONTAINER_NAME,
                                "state": {"terminated": {"exitCode": 2, "message": "bad sha256"}},
                            }
                        ]
                    )
                ],
            )
        ),
        ConditionType.STALLED,
        "True",
    ),
    Row(
        Reason.SMOKE_TEST_FAILED,
        _tiny(_smoke_failed),
        ConditionType.STALLED,
        "True",
        requeues=True,
        check=_assert_gate_set,
    ),
    Row(
        Reason.CRASH_LOOP,
        _tiny(lambda m: serving(m, [pod(containers=[waiting("CrashLoopBackOff", restarts=3)])])),
        ConditionType.STALLED,
        "True",
    ),
    Row(
        Reason.IMAGE_PULL_FAILED,
        _tiny(lambda m: serving(m, [pod(containers=[waiting("ImagePullBackOff")])])),
        ConditionType.STALLED,
        "True",
    ),
    Row(
        Reason.UNSCHEDULABLE,
        _tiny(
            lambda m: serving(
                m,
                [
                    pod(
                        conditions=[
                            {"type": "PodScheduled", "reason": "Unschedulable", "message": "0/3"}
                        ]
                    )
                ],
            )
        ),
        ConditionType.SERVING,
    ),
    Row(
        Reason.VOLUME_MOUNT_FAILED,
        _tiny(_volume_not_mounted),
        ConditionType.SERVING,
        "True",  # one replica serves; the other waits for its volume
    ),
    Row(
        Reason.VOLUME_MOUNT_FAILED,
        _tiny(_download_volume_not_mounted),
        ConditionType.DOWNLOADED,
    ),
    Row(
        Reason.ROLLOUT_STALLED,
        _tiny(
            lambda m: serving(
                m,
                conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
            )
        ),
        ConditionType.STALLED,
        "True",
    ),
    Row(Reason.FINETUNE_JOB_NOT_FOUND, _finetune("missing"), ConditionType.STALLED, "True"),
    Row(Reason.FINETUNE_NOT_SUCCEEDED, _finetune("running"), ConditionType.DOWNLOADED),
    Row(Reason.BASE_MODEL_NOT_READY, _finetune("base-not-ready"), ConditionType.DOWNLOADED),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.reason}-{r.condition}")
def test_decide_reaches_the_reason(row: Row) -> None:
    m, observed = row.case()

    plan = decide(m, observed, SETTINGS, NOW)

    [condition] = [c for c in plan.status["conditions"] if c["type"] == row.condition]
    assert (condition["reason"], condition["status"]) == (row.reason, row.status), condition
    assert [c["kind"] for c in plan.create if c["kind"] != "Job"] == row.creates
    assert (plan.requeue_after is not None) is row.requeues
    if row.check is not None:
        row.check(plan)


def test_decide_is_pure_and_repeatable() -> None:
    """The same input gives the same plan, and the input is not changed."""
    m = model()
    observed = _smoke_failed(m)
    before = (m.model_dump(), copy.deepcopy(observed))

    first, second = decide(m, observed, SETTINGS, NOW), decide(m, observed, SETTINGS, NOW)

    assert first == second
    assert (m.model_dump(), observed) == before


def test_a_decided_status_stored_as_is_is_no_change() -> None:
    """What decide writes, read back as the Model's status, makes the next plan write nothing."""
    m = model()
    observed = serving(m, replicas=1, readyReplicas=1, updatedReplicas=1)
    plan = decide(m, observed, SETTINGS, NOW)
    stored = m.model_copy(deep=True)
    stored.status = stored.status.model_validate(
        {k: v for k, v in plan.status.items() if v is not None}
    )

    again = decide(stored, observed, SETTINGS, "2026-01-01T02:00:00Z")

    assert again.events == []
    assert again.progress_only
    assert {k: v for k, v in again.status.items() if v is not None} == stored.status.to_wire()


def test_every_reason_decide_names_has_a_row() -> None:
    named = set()
    for module in ("decide.py", "observe.py"):
        source = (REPO_ROOT / "operator/modelfleet/reconcile/model" / module).read_text()
        named |= {Reason[name] for name in re.findall(r"Reason\.([A-Z_]+)", source)}
    rows = {row.reason for row in ROWS}
    assert named - rows == set()


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ({"huggingface": {"repo": "org/tiny", "revision": "v2"}}, "org/tiny@v2"),
        ({"modelscope": {"repo": "org/tiny"}}, "org/tiny@master"),
        ({"pvc": {"claimName": "weights", "path": "/tiny"}}, "pvc:weights/tiny"),
    ],
)
def test_the_source_column_says_where_the_weights_come_from(
    source: dict[str, Any], shown: str
) -> None:
    m = model(source=source, storage={"size": "1Gi"})
    plan = decide(m, Observed(claim={"metadata": {"name": "weights"}}), SETTINGS, NOW)
    assert plan.status["summary"]["source"] == shown
