#!/usr/bin/env bash
# Build the local control plane's binaries from Go modules, once per version, into a cache
# outside the repository. A second run finds every binary in place and builds nothing.
#
#   hack/build-tools.sh            build (or reuse) everything
#   hack/build-tools.sh --print    print the bin directory of each tool, build nothing
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
mkdir -p "$MODELFLEET_CACHE/src" "$MODELFLEET_CACHE/logs"

log() { printf '[build-tools] %s\n' "$*" >&2; }

# Timed build of one tool; skipped when every output already exists.
build_if_missing() {
  local name=$1; shift
  local outputs=$1; shift
  local missing=0 f
  for f in $outputs; do [[ -x $f ]] || missing=1; done
  if (( missing == 0 )); then log "$name: cached"; return 0; fi
  local start=$SECONDS
  log "$name: building"
  "$@"
  log "$name: built in $((SECONDS - start))s"
  echo "$name $((SECONDS - start))" >>"$MODELFLEET_CACHE/logs/build-times.txt"
}

# k8s.io/kubernetes replaces its staging modules with local paths; a wrapper module pins each
# one to the matching published v0.x version instead.
build_kubernetes() {
  local dir=$MODELFLEET_CACHE/src/kubernetes-$K8S_VERSION out=$K8S_BIN
  local staging=v0.${K8S_VERSION#v1.}
  mkdir -p "$dir" "$out"
  local gomod
  gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  {
    echo "module modelfleet.local/k8sbuild"
    echo
    sed -n 's/^go \(.*\)/go \1/p' "$gomod"
    sed -n 's/^godebug \(.*\)/godebug \1/p' "$gomod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
    echo ")"
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$dir" && go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$dir" && go mod download)
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local pkg ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  local cmd
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    log "  go build $cmd"
    (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd")
  done
}

# `go install` one package at a version into a bin directory, under the given binary name.
go_install() {
  local package_at_version=$1 out=$2 name=$3
  local gobin=$MODELFLEET_CACHE/src/gobin-$$
  mkdir -p "$out" "$gobin"
  log "  go install $package_at_version"
  GOBIN=$gobin go install -trimpath -ldflags "-s -w" "$package_at_version" \
    >>"$MODELFLEET_CACHE/logs/go-install.log" 2>&1
  mv "$gobin"/* "$out/$name"
  rmdir "$gobin"
}

if [[ ${1:-} == --print ]]; then
  printf '%s\n' "$K8S_BIN" "$ETCD_BIN" "$KWOK_BIN" "$HELM_BIN" "$PROMTOOL_BIN"
  exit 0
fi

build_if_missing "kubernetes $K8S_VERSION" \
  "$K8S_BIN/kube-apiserver $K8S_BIN/kube-controller-manager $K8S_BIN/kube-scheduler $K8S_BIN/kubectl" \
  build_kubernetes
build_if_missing "etcd $ETCD_VERSION" "$ETCD_BIN/etcd" \
  go_install "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "$ETCD_BIN" etcd
build_if_missing "kwok $KWOK_VERSION" "$KWOK_BIN/kwok" \
  go_install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "$KWOK_BIN" kwok
build_if_missing "kwokctl $KWOK_VERSION" "$KWOK_BIN/kwokctl" \
  go_install "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION" "$KWOK_BIN" kwokctl
build_if_missing "helm $HELM_VERSION" "$HELM_BIN/helm" \
  go_install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$HELM_BIN" helm
build_if_missing "promtool $PROMTOOL_VERSION" "$PROMTOOL_BIN/promtool" \
  go_install "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" "$PROMTOOL_BIN" promtool
log "all tools in $MODELFLEET_CACHE/bin"
