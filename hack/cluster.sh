#!/usr/bin/env bash
# The local cluster: a real kube-apiserver, etcd, controller-manager and scheduler with kwok
# simulating 4 GPU nodes (8 x nvidia.com/gpu each) and 2 CPU nodes.
#
#   hack/cluster.sh up      build the binaries once (cached), start the cluster
#   hack/cluster.sh down    stop every process it started and remove its state
#   hack/cluster.sh env     print `export KUBECONFIG=...`
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source hack/versions.sh

bash hack/python-env.sh dev
[[ ${1:-} == up ]] && bash hack/build-tools.sh
export MODELFLEET_K8S_BIN=$K8S_BIN MODELFLEET_ETCD_BIN=$ETCD_BIN MODELFLEET_KWOK_BIN=$KWOK_BIN
export MODELFLEET_CACHE
exec .venv/bin/modelfleet dev "$@"
