#!/usr/bin/env bash
# The whole test suite, from a fresh clone: Python environment, lint and types, CRD freshness,
# unit tests, then the integration tier against the local control plane (built once into
# ~/.cache/modelfleet) or against the cluster MODELFLEET_TEST_KUBECONFIG names.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash hack/python-env.sh dev trainer
export PATH=$PWD/.venv/bin:$PATH

echo "== lint, format, types, CRD freshness"
ruff check operator tests benchmarks
ruff format --check operator tests benchmarks
mypy --strict operator/
modelfleet crds --check

echo "== unit tests"
pytest -m unit tests/unit "$@"

if [[ -d tests/integration && -n $(find tests/integration -name 'test_*.py' -print -quit) ]]; then
  echo "== integration tests"
  if [[ -z ${MODELFLEET_TEST_KUBECONFIG:-} ]]; then
    bash hack/build-tools.sh
  fi
  pytest -m integration tests/integration "$@"
fi
