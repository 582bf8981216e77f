"""Pure pieces of the Model reconcile: Events per transition, and when status must be written."""

from __future__ import annotations

import pytest

from modelfleet.reconcile.common import StatusClock, status_changed
from modelfleet.reconcile.model.status import significant, transition_events

pytestmark = pytest.mark.unit


def _c(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def test_one_event_per_reconcile_headed_by_the_problem() -> None:
    before = [_c("Downloaded", "False", "Pending"), _c("Ready", "False", "Pending")]
    after = [
        _c("Downloaded", "False", "RevisionNotFound", "no such branch"),
        _c("Ready", "False", "RevisionNotFound", "no such branch"),
        _c("Stalled", "True", "RevisionNotFound", "no such branch"),
        _c("Reconciling", "False", "RevisionNotFound"),
        _c("Serving", "True", "Serving", "2/2 replicas ready"),
    ]
    assert transition_events(before, after) == [
        (
            "Warning",
            "RevisionNotFound",
            "Downloaded=False, Ready=False, Stalled=True: no such branch;"
            " Serving=True (Serving): 2/2 replicas ready",
        )
    ]


def test_the_event_of_a_download_names_it_and_what_waits() -> None:
    before = [
        _c("Downloaded", "False", "Pending"),
        _c("Serving", "False", "Pending"),
        _c("Ready", "False", "Pending"),
    ]
    after = [
        _c("Downloaded", "True", "Downloaded", "revision abc verified"),
        _c("Serving", "False", "WaitingForReplicas", "0/2 replicas ready"),
        _c("Ready", "False", "WaitingForReplicas", "0/2 replicas ready"),
    ]
    assert transition_events(before, after) == [
        (
            "Normal",
            "Downloaded",
            "Downloaded=True: revision abc verified;"
            " Serving=False, Ready=False (WaitingForReplicas): 0/2 replicas ready",
        )
    ]
    ready = [
        _c("Downloaded", "True", "Downloaded", "revision abc verified"),
        _c("Serving", "True", "Serving", "2/2 replicas ready"),
        _c("Ready", "True", "Ready", "weights verified"),
    ]
    assert transition_events(after, ready)[0][:2] == ("Normal", "Ready")


def test_no_transition_no_event() -> None:
    conditions = [_c("Ready", "True", "Ready"), _c("Stalled", "False", "Ready")]
    assert transition_events(conditions, conditions) == []


def test_a_none_value_that_is_already_absent_is_no_change() -> None:
    stored = {"status": {"summary": {"revision": "abc1234"}, "serving": None}}
    assert not status_changed(stored, {"summary": {"revision": "abc1234", "replicas": None}})
    assert status_changed(stored, {"summary": {"revision": "def5678"}})
    assert status_changed({"status": {"modelPath": "/x"}}, {"modelPath": None})


def test_replica_counts_and_messages_are_progress_a_reason_is_not() -> None:
    before = {
        "observedGeneration": 2,
        "conditions": [_c("Ready", "False", "WaitingForReplicas", "0/2 replicas ready")],
        "serving": {"readyReplicas": 0, "activeRevision": "abc"},
    }
    counted = {
        **before,
        "conditions": [_c("Ready", "False", "WaitingForReplicas", "1/2 replicas ready")],
        "serving": {"readyReplicas": 1, "activeRevision": "abc"},
    }
    ready = {**counted, "conditions": [_c("Ready", "True", "Ready", "weights verified")]}
    rolled = {**counted, "serving": {"readyReplicas": 1, "activeRevision": "def"}}
    assert significant(counted) == significant(before)
    assert significant(ready) != significant(before)
    assert significant(rolled) != significant(before)
    assert significant({**before, "observedGeneration": 3}) != significant(before)


def test_progress_is_written_at_most_once_per_interval() -> None:
    clock = StatusClock()
    assert clock.wait("ns/m", 5.0) == 0.0  # never written: now
    clock.written("ns/m")
    assert 4.0 < clock.wait("ns/m", 5.0) <= 5.0
    assert clock.wait("ns/m", 0.0) == 0.0
    clock.forget("ns/m")
    assert clock.wait("ns/m", 5.0) == 0.0
