"""The in-memory copy of the children: ordering by resourceVersion, selectors, no finalizer."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from modelfleet.handlers import operator as operator_module
from modelfleet.kube.cache import CachedKube, ObjectCache, parse_selector
from modelfleet.kube.client import JOB, POD, STORAGE_CLASS, Kube

pytestmark = pytest.mark.unit


def _obj(name: str, rv: str, namespace: str = "ns", **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv, "labels": labels}
    }


def test_an_older_state_never_replaces_a_newer_one() -> None:
    cache = ObjectCache()
    cache.put(JOB, _obj("a", "20", state="created-by-us"))
    cache.put(JOB, _obj("a", "7", state="late-watch-event"))
    assert (cache.get(JOB, "ns", "a") or {})["metadata"]["labels"] == {"state": "created-by-us"}
    cache.put(JOB, _obj("a", "21", state="next"))
    assert (cache.get(JOB, "ns", "a") or {})["metadata"]["labels"] == {"state": "next"}


def test_list_filters_by_namespace_and_every_label() -> None:
    cache = ObjectCache()
    cache.put(POD, _obj("p1", "1", **{"modelfleet.io/model": "m", "job-name": "j"}))
    cache.put(POD, _obj("p2", "2", **{"modelfleet.io/model": "m"}))
    cache.put(POD, _obj("p3", "3", namespace="other", **{"modelfleet.io/model": "m"}))
    names = [p["metadata"]["name"] for p in cache.list(POD, "ns", "modelfleet.io/model=m")]
    assert names == ["p1", "p2"]
    assert [
        p["metadata"]["name"] for p in cache.list(POD, "ns", "modelfleet.io/model=m,job-name=j")
    ] == ["p1"]
    assert cache.list(JOB, "ns") == []


def test_remove_forgets_and_kinds_are_separate() -> None:
    cache = ObjectCache()
    cache.put(JOB, _obj("a", "1"))
    cache.put(POD, _obj("a", "1"))
    cache.remove(JOB, "ns", "a")
    assert cache.get(JOB, "ns", "a") is None
    assert cache.get(POD, "ns", "a") is not None


@pytest.mark.parametrize("selector", ["a!=b", "a==b", "a in (b)"])
def test_selectors_the_cache_cannot_answer_are_refused(selector: str) -> None:
    with pytest.raises(ValueError, match="equality"):
        parse_selector(selector)


def test_workers_do_not_put_a_finalizer_on_models() -> None:
    registry = kopf.get_default_registry()
    daemons = {
        handler.fn: handler
        for handler in registry._spawning.get_all_handlers()
        if handler.fn in (operator_module.model_worker, operator_module.finetune_worker)
    }
    assert len(daemons) == 2
    assert all(not handler.requires_finalizer for handler in daemons.values())


def test_indexed_lists_follow_label_changes_and_removal() -> None:
    cache = ObjectCache(indexed_labels=("modelfleet.io/model",))
    cache.put(POD, _obj("p1", "1", **{"modelfleet.io/model": "a", "role": "x"}))
    cache.put(POD, _obj("p2", "2", **{"modelfleet.io/model": "a", "role": "y"}))
    cache.put(POD, _obj("p3", "3", **{"modelfleet.io/model": "b"}))
    assert [p["metadata"]["name"] for p in cache.list(POD, "ns", "modelfleet.io/model=a")] == [
        "p1",
        "p2",
    ]
    assert [
        p["metadata"]["name"] for p in cache.list(POD, "ns", "modelfleet.io/model=a,role=y")
    ] == ["p2"]
    cache.put(POD, _obj("p1", "4", **{"modelfleet.io/model": "b"}))  # relabelled
    cache.remove(POD, "ns", "p2")
    assert cache.list(POD, "ns", "modelfleet.io/model=a") == []
    assert [p["metadata"]["name"] for p in cache.list(POD, "ns", "modelfleet.io/model=b")] == [
        "p1",
        "p3",
    ]
    assert cache.count(POD) == 2


def test_the_watch_event_of_our_own_write_wakes_nothing_once() -> None:
    cache = ObjectCache()
    cache.wrote(JOB, _obj("a", "10"))
    assert not cache.is_own_write(JOB, _obj("a", "9"))  # an older state: someone else's
    assert cache.is_own_write(JOB, _obj("a", "10"))
    assert not cache.is_own_write(JOB, _obj("a", "10"))  # only once
    assert not cache.is_own_write(POD, _obj("b", "10"))


def test_the_cache_keeps_no_pod_template_and_no_managed_fields() -> None:
    cache = ObjectCache()
    pod = _obj("p", "1")
    pod["metadata"]["managedFields"] = [{"manager": "kubelet"}]
    pod["spec"] = {"containers": [{"name": "c", "env": [{"name": "A", "value": "x" * 1000}]}]}
    pod["status"] = {"phase": "Running"}
    cache.put(POD, pod)
    kept = cache.get(POD, "ns", "p")
    assert kept is not None and "spec" not in kept and "managedFields" not in kept["metadata"]
    assert kept["status"] == {"phase": "Running"}
    assert "managedFields" in pod["metadata"]  # the caller's object is left alone


def test_storage_classes_are_read_once_a_minute() -> None:
    gets: list[str] = []

    def request(method: str, path: str, **_: Any) -> Any:
        gets.append(path)
        return {"metadata": {"name": path.rsplit("/", 1)[-1]}, "volumeBindingMode": "Immediate"}

    now = [1000.0]
    kube = CachedKube(Kube(api=None), ObjectCache(), clock=lambda: now[0])
    kube.request = request  # type: ignore[method-assign]
    for _ in range(3):
        found = kube.get(STORAGE_CLASS, None, "fast")
        assert found is not None and found["volumeBindingMode"] == "Immediate"
    kube.get(STORAGE_CLASS, None, "slow")
    assert len(gets) == 2
    now[0] += 61
    kube.get(STORAGE_CLASS, None, "fast")
    assert len(gets) == 3
