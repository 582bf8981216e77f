#!/usr/bin/env bash
# The local cluster: a real kube-apiserver, etcd, controller-manager and scheduler with kwok
# simulating 4 GPU nodes (8 x nvidia.com/gpu each) and 2 CPU nodes.
#
#   hack/cluster.sh up      build the binaries once (cached), start the cluster
#   hack/cluster.sh down    stop every process it started and remove its state
#   hack/cluster.sh env     print `export KUBECONFIG=...`
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source hack/lib.sh
source hack/versions.sh

if [[ ${1:-} == up ]]; then
  # The Python environments (the project's, and the CPU vLLM engine's) install while the tools
  # compile: the first wait on the network, the second on the CPUs.
  bash hack/python-env.sh dev &
  python_env=$!
  bash hack/engine-env.sh &
  engine_env=$!
  bash hack/build-tools.sh cluster
  wait "$python_env" || die "the Python environment did not install (see the pip output above)"
  wait "$engine_env" || die "the vLLM engine environment did not install (see above)"
else
  bash hack/python-env.sh dev
fi
# The dev agent runs serving pods with this engine.
MODELFLEET_ENGINE_PYTHON=$(bash hack/engine-env.sh --print)
export MODELFLEET_ENGINE_PYTHON
export MODELFLEET_K8S_BIN=$K8S_BIN MODELFLEET_ETCD_BIN=$ETCD_BIN MODELFLEET_KWOK_BIN=$KWOK_BIN
export MODELFLEET_CACHE
exec .venv/bin/modelfleet dev "$@"
