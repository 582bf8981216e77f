"""Pure pieces of the Model reconcile: Events per transition, and when status must be written."""

from __future__ import annotations

import pytest

from modelfleet.handlers.model import _transition_events, status_changed

pytestmark = pytest.mark.unit


def _c(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def test_transitions_sharing_a_reason_share_one_event() -> None:
    before = [_c("Downloaded", "False", "Pending"), _c("Ready", "False", "Pending")]
    after = [
        _c("Downloaded", "False", "RevisionNotFound", "no such branch"),
        _c("Ready", "False", "RevisionNotFound", "no such branch"),
        _c("Stalled", "True", "RevisionNotFound", "no such branch"),
        _c("Reconciling", "False", "RevisionNotFound"),
        _c("Serving", "True", "Serving", "2/2 replicas ready"),
    ]
    events = _transition_events(before, after)
    assert events == [
        (
            "Warning",
            "RevisionNotFound",
            "Downloaded=False, Ready=False, Stalled=True: no such branch",
        ),
        ("Normal", "Serving", "Serving=True: 2/2 replicas ready"),
    ]


def test_no_transition_no_event() -> None:
    conditions = [_c("Ready", "True", "Ready"), _c("Stalled", "False", "Ready")]
    assert _transition_events(conditions, conditions) == []


def test_a_none_value_that_is_already_absent_is_no_change() -> None:
    stored = {"status": {"summary": {"revision": "abc1234"}, "serving": None}}
    assert not status_changed(stored, {"summary": {"revision": "abc1234", "replicas": None}})
    assert status_changed(stored, {"summary": {"revision": "def5678"}})
    assert status_changed({"status": {"modelPath": "/x"}}, {"modelPath": None})
