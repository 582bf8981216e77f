# shellcheck shell=bash disable=SC2034  # sourced: the variables are read by the scripts that source it
# Pinned versions of the local control plane's tools; sourced by the hack/ scripts.
# The cache is keyed by these versions, so changing one rebuilds only that tool.
K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.19.5}
PROMTOOL_VERSION=${PROMTOOL_VERSION:-v0.316.0}

MODELFLEET_CACHE=${MODELFLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelfleet}
K8S_BIN=$MODELFLEET_CACHE/bin/kubernetes-$K8S_VERSION
ETCD_BIN=$MODELFLEET_CACHE/bin/etcd-$ETCD_VERSION
KWOK_BIN=$MODELFLEET_CACHE/bin/kwok-$KWOK_VERSION
HELM_BIN=$MODELFLEET_CACHE/bin/helm-$HELM_VERSION
PROMTOOL_BIN=$MODELFLEET_CACHE/bin/promtool-$PROMTOOL_VERSION
