"""Serve the demo repositories on 127.0.0.1: `python -m tests.hubserver --port 18765`.

The e2e tier runs it in a pod of its test namespace with ``--host 0.0.0.0``.

``modelfleet-test/tiny-llama`` has two commits: ``main`` and the branch ``v2`` (different
random weights), so a revision change can be tried by hand. The dataset repository
``modelfleet-test/tiny-instructions`` holds ``data/train.jsonl`` for
``examples/finetunejob-hf-dataset.yaml``.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading

from tests.hubserver.repos import tiny_model_files
from tests.hubserver.server import HubServer

DEMO_REPO = "modelfleet-test/tiny-llama"
DEMO_DATASET = "modelfleet-test/tiny-instructions"


def demo_dataset_rows(count: int = 40) -> bytes:
    """JSONL instruction rows: counting, in words and digits."""
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    rows = [
        {"instruction": f"Write the number {words[i % 10]} in digits.", "output": str(i % 10)}
        for i in range(count)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def demo_hub(port: int, host: str = "127.0.0.1") -> HubServer:
    """A started hub with the demo model and dataset repositories."""
    hub = HubServer().start(port, host)
    hub.add_repo(DEMO_REPO, tiny_model_files(seed=0))
    hub.add_commit(DEMO_REPO, tiny_model_files(seed=1), branches=("v2",))
    hub.add_repo(
        DEMO_DATASET,
        {"data/train.jsonl": demo_dataset_rows(), "README.md": b"# tiny instructions\n"},
        repo_type="dataset",
    )
    return hub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    hub = demo_hub(args.port, args.host)
    print(f"serving {DEMO_REPO} at {hub.endpoint}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    hub.stop()


if __name__ == "__main__":
    main()
