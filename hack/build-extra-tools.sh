#!/usr/bin/env bash
# Build the tools the chart and GitOps tests use besides the control plane, once per version,
# into the same cache as hack/build-tools.sh. A second run builds nothing.
#
#   kstatus   hack/kstatus/ (sigs.k8s.io/cli-utils kstatus.Compute over stdin), as Flux judges health
#
# hadolint and the embedded Lua (lupa) come from PyPI into the virtual environment instead.
#
#   hack/build-extra-tools.sh            build (or reuse) everything
#   hack/build-extra-tools.sh --print    print the bin directory of each tool, build nothing
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source hack/versions.sh

KSTATUS_VERSION=${KSTATUS_VERSION:-v0.37.2}
KSTATUS_BIN=$MODELFLEET_CACHE/bin/kstatus-$KSTATUS_VERSION

if [[ ${1:-} == --print ]]; then
  printf '%s\n' "$KSTATUS_BIN"
  exit 0
fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
log() { printf '[build-extra-tools] %s\n' "$*" >&2; }

# The module's go.mod must require the cli-utils version the cache directory is named after.
if ! grep -q "sigs.k8s.io/cli-utils $KSTATUS_VERSION\$" hack/kstatus/go.mod; then
  log "hack/kstatus/go.mod does not require sigs.k8s.io/cli-utils $KSTATUS_VERSION"
  exit 1
fi

if [[ -x $KSTATUS_BIN/kstatus && $KSTATUS_BIN/kstatus -nt hack/kstatus/main.go && $KSTATUS_BIN/kstatus -nt hack/kstatus/go.sum ]]; then
  log "kstatus $KSTATUS_VERSION: cached"
else
  start=$SECONDS
  log "kstatus $KSTATUS_VERSION: building"
  mkdir -p "$KSTATUS_BIN" "$MODELFLEET_CACHE/logs"
  (cd hack/kstatus && go build -mod=readonly -trimpath -ldflags "-s -w" -o "$KSTATUS_BIN/kstatus" .)
  log "kstatus $KSTATUS_VERSION: built in $((SECONDS - start))s"
  echo "kstatus $((SECONDS - start))" >>"$MODELFLEET_CACHE/logs/build-times.txt"
fi
log "extra tools in $MODELFLEET_CACHE/bin"
