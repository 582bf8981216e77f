#!/usr/bin/env bash
# The whole test suite, from a fresh clone: Python environment, lint and types, CRD freshness,
# unit tests, then the integration tier against the local control plane (built once into
# ~/.cache/modelfleet) or against the cluster MODELFLEET_TEST_KUBECONFIG names.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash hack/python-env.sh dev trainer modelscope
export PATH=$PWD/.venv/bin:$PATH

echo "== lint, format, types, CRD freshness"
ruff check operator tests benchmarks
ruff format --check operator tests benchmarks
mypy --strict operator/
modelfleet crds --check

echo "== control-plane tools (built once into ~/.cache/modelfleet)"
bash hack/build-tools.sh
bash hack/build-extra-tools.sh

echo "== unit tests"
pytest -m unit tests/unit "$@"

echo "== integration tests"
pytest -m integration tests/integration "$@"
