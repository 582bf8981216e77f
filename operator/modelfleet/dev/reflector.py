"""A local copy of one collection, kept current by a watch instead of polling.

The dev agent reacts to claims, volumes and pods. Listing thousands of them twice a second
costs the API server more than everything the operator does at scale, so each collection is
listed once and then watched from that list's resourceVersion; a failed or expired watch (the
API server restarted, 410 Gone) lists again after a short pause.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError

LOG = logging.getLogger(__name__)

WATCH_SECONDS = 60
RELIST_PAUSE_SECONDS = 1.0


class Reflector:
    """Objects of one collection by uid; ``changed`` is set whenever one of them changes."""

    def __init__(
        self, list_call: Callable[..., Any], changed: threading.Event, **params: Any
    ) -> None:
        self._list_call = list_call
        self._params = params
        self.name = getattr(getattr(list_call, "func", list_call), "__name__", "list")
        self._changed = changed
        self._objects: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()
        """Set once the first list has been read."""
        self.revision = 0
        """Counts the changes seen: whoever shares ``changed`` can tell whether it was this."""

    def items(self) -> list[dict[str, Any]]:
        """The current objects."""
        with self._lock:
            return list(self._objects.values())

    def run(self, stop: threading.Event) -> None:
        """List and watch until ``stop`` is set."""
        while not stop.is_set():
            try:
                version = self._list()
                while not stop.is_set() and version:
                    version = self._watch(version)
            except (ApiException, HTTPError, OSError, ValueError) as error:
                LOG.debug("%s: watch ended (%s); listing again", self.name, error)
            stop.wait(RELIST_PAUSE_SECONDS)

    def start(self, stop: threading.Event) -> threading.Thread:
        """Run in a daemon thread."""
        thread = threading.Thread(target=self.run, args=(stop,), daemon=True)
        thread.start()
        return thread

    def _list(self) -> str:
        response = self._list_call(_preload_content=False, **self._params)
        listing = json.loads(response.data)
        with self._lock:
            self._objects = {item["metadata"]["uid"]: item for item in listing["items"]}
            self.revision += 1
        self.synced.set()
        self._changed.set()
        return str(listing["metadata"].get("resourceVersion") or "")

    def _watch(self, version: str) -> str:
        """One watch request; the resourceVersion to go on from, or "" to list again."""
        response = self._list_call(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _preload_content=False,
            _request_timeout=WATCH_SECONDS + 30,
            **self._params,
        )
        try:
            for line in iter_resp_lines(response):
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    return ""  # e.g. 410 Gone: the version is too old
                version = str(obj["metadata"].get("resourceVersion") or version)
                if event["type"] == "BOOKMARK":
                    continue
                with self._lock:
                    if event["type"] == "DELETED":
                        self._objects.pop(obj["metadata"]["uid"], None)
                    else:
                        self._objects[obj["metadata"]["uid"]] = obj
                    self.revision += 1
                self._changed.set()
        finally:
            response.release_conn()
        return version
