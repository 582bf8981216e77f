"""Real vLLM on a GPU: the exact command the Deployment builder generates serves the tiny model.

Runs only where `vllm` is installed and a CUDA GPU is visible (`pytest -m gpu tests/gpu`);
the test command of CI never selects it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from modelfleet.api.v1alpha1 import Model
from modelfleet.builders.serving import build_deployment
from modelfleet.settings import OperatorSettings
from tests.support.cluster import REPO_ROOT
from tests.support.tinymodel import write_tiny_llama

pytestmark = pytest.mark.gpu


def _gpu_available() -> bool:
    return shutil.which("vllm") is not None and shutil.which("nvidia-smi") is not None


@pytest.mark.skipif(not _gpu_available(), reason="needs vllm and an NVIDIA GPU")
def test_generated_vllm_command_serves_the_tiny_model(tmp_path: Path) -> None:
    weights = write_tiny_llama(tmp_path / "weights")
    manifest = yaml.safe_load((REPO_ROOT / "examples/model-tiny.yaml").read_text())
    manifest["metadata"] |= {"namespace": "default", "uid": "00000000-0000-0000-0000-000000000001"}
    model = Model.model_validate(manifest)
    deployment = build_deployment(
        model,
        settings=OperatorSettings(),
        model_path=str(weights),
        revision="local",
        claim_name="unused",
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    argv = [*container["command"], *container["args"]]
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"] if "value" in e}}
    env["HOME"] = str(tmp_path)
    port = argv[argv.index("--port") + 1]
    log = (tmp_path / "vllm.log").open("wb")
    server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "vllm.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                time.sleep(2)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/completions",
            data=json.dumps({"model": "tiny", "prompt": "the cat is", "max_tokens": 4}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert body["choices"][0]["text"] is not None
    finally:
        server.terminate()
        server.wait(timeout=60)
