"""Real vLLM: the exact command the Deployment builder generates serves the tiny model.

The same test runs twice: on a GPU (where `vllm` is installed and an NVIDIA GPU is visible),
the builder's command as it is; on CPU, the same command through the local cluster's one CPU
substitution (`cpu_engine_command`, the CPU vLLM of `hack/engine-env.sh`). `pytest -m gpu
tests/gpu` runs what the machine can; `hack/test.sh` runs it too.
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
from modelfleet.dev.engines import cpu_engine_command
from modelfleet.settings import OperatorSettings
from tests.support.cluster import REPO_ROOT, engine_python
from tests.support.tinymodel import write_tiny_llama

pytestmark = pytest.mark.gpu


def _gpu_available() -> bool:
    return shutil.which("vllm") is not None and shutil.which("nvidia-smi") is not None


@pytest.mark.parametrize("device", ["gpu", "cpu"])
def test_generated_vllm_command_serves_the_tiny_model(tmp_path: Path, device: str) -> None:
    if device == "gpu" and not _gpu_available():
        pytest.skip("needs vllm and an NVIDIA GPU")
    engine = engine_python() if device == "cpu" else None
    if device == "cpu" and engine is None:
        pytest.skip("the CPU vLLM engine is not installed: bash hack/engine-env.sh")
    weights = write_tiny_llama(tmp_path / "weights")
    manifest = yaml.safe_load((REPO_ROOT / "examples/model-tiny.yaml").read_text())
    manifest["metadata"] |= {"namespace": "default", "uid": "00000000-0000-0000-0000-000000000001"}
    manifest["spec"]["serving"]["maxModelLen"] = 256  # the tiny Llama's positions
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
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "HF_HOME", "VLLM_CACHE_ROOT"):
        env[name] = str(tmp_path / name.lower())
    port = argv[argv.index("--port") + 1]
    if engine is not None:
        argv, env = cpu_engine_command(argv, env, pod_ip="127.0.0.1", engine_python=engine)
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
        assert body["choices"][0]["text"], "the engine generated text"
        assert body["usage"]["completion_tokens"] == 4
    finally:
        server.terminate()
        server.wait(timeout=60)
