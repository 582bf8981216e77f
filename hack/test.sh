#!/usr/bin/env bash
# The whole test suite, from a fresh clone: Python environment, lint and types, CRD freshness,
# unit tests, then the integration tier against the local control plane (built once into
# ~/.cache/modelfleet) or against the cluster MODELFLEET_TEST_KUBECONFIG names.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source hack/lib.sh

# The tools' build commands are checked first (seconds with a warm module cache), so a build
# that cannot work from an empty cache fails here even when a cached binary would hide it.
echo "== tools: every build command resolves (nothing compiled)"
bash hack/build-tools.sh --check all

bash hack/python-env.sh dev trainer modelscope
export PATH=$PWD/.venv/bin:$PATH

echo "== lint, format, types, CRD freshness"
ruff check operator tests benchmarks
ruff format --check operator tests benchmarks
mypy --strict operator/ tests/ benchmarks/
modelfleet crds --check

echo "== tools and the CPU vLLM engine (built and installed once into ~/.cache/modelfleet)"
bash hack/engine-env.sh &
engine_env=$!
bash hack/build-tools.sh all
wait "$engine_env" || die "the vLLM engine environment did not install (see above)"

echo "== unit tests"
pytest -m unit tests/unit "$@"

echo "== the gpu tier's vLLM test: on CPU here, and on a GPU where vLLM and one exist"
pytest -m gpu tests/gpu "$@"

echo "== integration tests"
pytest -m integration tests/integration "$@"
echo "== the whole suite passed in $(elapsed "$SECONDS")"
