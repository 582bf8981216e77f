#!/usr/bin/env bash
# Build the local cluster's tools from their Go modules, once per version, into a cache outside
# the repository (MODELFLEET_CACHE, default ~/.cache/modelfleet). A second run builds nothing.
#
#   hack/build-tools.sh [cluster|all|TOOL...]   build (or reuse) the tools named; default cluster
#   hack/build-tools.sh --check [...]           resolve every tool's module graph and plan its
#                                               build (`go build -n`), compiling nothing
#   hack/build-tools.sh --print                 print the bin directory of each tool
#
# Tools: kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl), etcd,
# kwok (kwok, kwokctl), helm, promtool, kstatus (hack/kstatus), kube-score. `cluster` is what
# the local cluster runs (the demo needs nothing else); `all` adds what the tests use.
#
# Every tool is built the same way: a wrapper module in $MODELFLEET_CACHE/src that requires the
# tool's module at its pinned version (modules whose go.mod replaces packages with local paths,
# like k8s.io/kubernetes and etcd's server, cannot be `go install`ed). A build runs in two phases
# with the same commands: plan (`go build -n`: resolves the module graph and downloads the
# sources, for every tool at once, since that waits on the network) and compile (one tool at a
# time, since each `go build` already uses both cores). --check runs only the first phase, so
# CI learns in seconds that a build command cannot work, even where a cached binary hides it.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source hack/lib.sh
source hack/versions.sh
REPO_ROOT=$PWD

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
SRC=$MODELFLEET_CACHE/src
LOGS=$MODELFLEET_CACHE/logs
HEARTBEAT_SECONDS=${HEARTBEAT_SECONDS:-60}

log() { printf '[build-tools] %s\n' "$*" >&2; }

usage() { sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

# --- the tools --------------------------------------------------------------------------------
# tool_version NAME, tool_bin NAME, tool_outputs NAME (binary names), tool_module NAME,
# tool_packages NAME: one table, read by the phases below.
tool_version() {
  case $1 in
    kubernetes) echo "$K8S_VERSION" ;; etcd) echo "$ETCD_VERSION" ;; kwok) echo "$KWOK_VERSION" ;;
    helm) echo "$HELM_VERSION" ;; promtool) echo "$PROMTOOL_VERSION" ;; kstatus) echo "$KSTATUS_VERSION" ;;
    kube-score) echo "$KUBE_SCORE_VERSION" ;;
  esac
}
tool_bin() {
  case $1 in
    kubernetes) echo "$K8S_BIN" ;; etcd) echo "$ETCD_BIN" ;; kwok) echo "$KWOK_BIN" ;;
    helm) echo "$HELM_BIN" ;; promtool) echo "$PROMTOOL_BIN" ;; kstatus) echo "$KSTATUS_BIN" ;;
    kube-score) echo "$KUBE_SCORE_BIN" ;;
  esac
}
tool_module() {
  case $1 in
    kubernetes) echo k8s.io/kubernetes ;; etcd) echo go.etcd.io/etcd/server/v3 ;;
    kwok) echo sigs.k8s.io/kwok ;; helm) echo helm.sh/helm/v3 ;;
    promtool) echo github.com/prometheus/prometheus ;; kstatus) echo sigs.k8s.io/cli-utils ;;
    kube-score) echo github.com/zegl/kube-score ;;
  esac
}
tool_packages() {
  case $1 in
    kubernetes)
      local cmd
      for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
        echo "k8s.io/kubernetes/cmd/$cmd"
      done
      ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    kwok) printf '%s\n' sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl ;;
    helm) echo helm.sh/helm/v3/cmd/helm ;;
    promtool) echo github.com/prometheus/prometheus/cmd/promtool ;;
    kstatus) echo . ;;
    kube-score) echo github.com/zegl/kube-score/cmd/kube-score ;;
  esac
}
tool_outputs() {
  case $1 in
    kubernetes) echo kube-apiserver kube-controller-manager kube-scheduler kubectl ;;
    etcd) echo etcd ;; kwok) echo kwok kwokctl ;; helm) echo helm ;; promtool) echo promtool ;;
    kstatus) echo kstatus ;; kube-score) echo kube-score ;;
  esac
}
# The directory the tool builds in: a generated wrapper module, or hack/kstatus (committed).
tool_dir() {
  if [[ $1 == kstatus ]]; then echo "$REPO_ROOT/hack/kstatus"; else echo "$SRC/$1-$(tool_version "$1")"; fi
}

# Version stamped into the Kubernetes binaries, so clients and kwokctl see a real version.
kubernetes_ldflags() {
  local minor=${K8S_VERSION#v1.} pkg flags=""
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

# Write the wrapper module of a tool: its go and godebug lines, a require of the tool's module,
# and for k8s.io/kubernetes one replace per staging module (=> the published v0.x release).
write_wrapper() {
  local name=$1 module version dir gomod
  module=$(tool_module "$name")
  version=$(tool_version "$name")
  dir=$(tool_dir "$name")
  mkdir -p "$dir"
  local json
  json=$(cd "$dir" && go mod download -json "$module@$version" 2>&1) || {
    echo "go mod download -json $module@$version failed:"
    echo "$json"
    return 1
  }
  gomod=$(sed -n 's/.*"GoMod": "\(.*\)",*/\1/p' <<<"$json")
  [[ -n $gomod && -f $gomod ]] || { echo "go mod download $module@$version printed no GoMod path"; return 1; }
  {
    echo "module modelfleet.local/build/$name"
    echo
    grep -E '^(go|godebug) ' "$gomod" || true
    echo
    echo "require $module $version"
    if [[ $name == kubernetes ]]; then
      echo
      echo "replace ("
      sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 v0.'"${K8S_VERSION#v1.}"'#p' "$gomod"
      echo ")"
    fi
  } >"$dir/go.mod"
  rm -f "$dir/go.sum"
}

# go_build NAME [-n]: the one build command of a tool; `-n` plans it without compiling.
go_build() {
  local name=$1 plan=${2:-} dir out ldflags="-s -w" mod=-mod=mod
  dir=$(tool_dir "$name")
  out=$(tool_bin "$name")
  [[ $name == kubernetes ]] && ldflags+=$(kubernetes_ldflags)
  [[ $name == kube-score ]] && ldflags+=" -X main.version=${KUBE_SCORE_VERSION#v}"
  [[ $name == kstatus ]] && mod=-mod=readonly
  local packages
  mapfile -t packages < <(tool_packages "$name")
  mkdir -p "$out"
  if [[ $name == etcd ]]; then
    # etcd's package is its module root: `go build -o DIR` would name the binary "v3".
    out=$out/etcd
  else
    out=$out/
  fi
  # shellcheck disable=SC2086  # $plan is empty or -n
  (cd "$dir" && go build $plan $mod -trimpath -ldflags "$ldflags" -o "$out" "${packages[@]}")
}

# The plan phase of one tool: wrapper module, module graph, sources. Writes its own log.
plan_tool() {
  local name=$1 logfile=$LOGS/build-$1.log
  {
    echo "== plan $name $(tool_version "$name") in $(tool_dir "$name") ($(date -u +%FT%TZ))"
    if [[ $name == kstatus ]]; then
      grep -q "sigs.k8s.io/cli-utils $KSTATUS_VERSION\$" "$REPO_ROOT/hack/kstatus/go.mod" ||
        { echo "hack/kstatus/go.mod does not require sigs.k8s.io/cli-utils $KSTATUS_VERSION"; return 1; }
    else
      write_wrapper "$name" || return 1
    fi
    local plan=$SRC/$name.plan
    if ! go_build "$name" -n 2>"$plan"; then
      cat "$plan"
      return 1
    fi
    echo "planned: $(grep -c . "$plan") lines of build commands"
  } >"$logfile" 2>&1
}

is_cached() {
  local name=$1 bin f
  bin=$(tool_bin "$name")
  for f in $(tool_outputs "$name"); do [[ -x $bin/$f ]] || return 1; done
  if [[ $name == kstatus ]]; then
    [[ $bin/kstatus -nt $REPO_ROOT/hack/kstatus/main.go && $bin/kstatus -nt $REPO_ROOT/hack/kstatus/go.sum ]] || return 1
  fi
}

# --- arguments ---------------------------------------------------------------------------------
CLUSTER_TOOLS=(kubernetes etcd kwok)
ALL_TOOLS=(kubernetes etcd kwok helm promtool kstatus kube-score)
check=0
tools=()
while (($#)); do
  case $1 in
    --check) check=1 ;;
    --print)
      printf '%s\n' "$K8S_BIN" "$ETCD_BIN" "$KWOK_BIN" "$HELM_BIN" "$PROMTOOL_BIN" "$KSTATUS_BIN" \
        "$KUBE_SCORE_BIN"
      exit 0
      ;;
    -h | --help) usage; exit 0 ;;
    cluster) tools+=("${CLUSTER_TOOLS[@]}") ;;
    all) tools+=("${ALL_TOOLS[@]}") ;;
    kubernetes | etcd | kwok | helm | promtool | kstatus | kube-score) tools+=("$1") ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
((${#tools[@]})) || tools=("${CLUSTER_TOOLS[@]}")
command -v go >/dev/null 2>&1 || die "go is not on PATH: install Go (1.24 or newer) to build the local cluster's tools"
mkdir -p "$SRC" "$LOGS"

# --- check: the plan phase of every tool, nothing compiled -------------------------------------
if ((check)); then
  started=$SECONDS
  for name in "${tools[@]}"; do
    plan_tool "$name" || fail_with_log "$name $(tool_version "$name"): module graph and build plan (go mod download, go build -n) in $(tool_dir "$name")" "$LOGS/build-$name.log"
    log "$name $(tool_version "$name"): module graph resolves, build planned"
  done
  log "checked ${#tools[@]} tool(s) in $(elapsed $((SECONDS - started)))"
  exit 0
fi

# --- build: plan what is missing, all at once; then compile one at a time ----------------------
todo=()
for name in "${tools[@]}"; do
  if is_cached "$name"; then log "$name $(tool_version "$name"): cached"; else todo+=("$name"); fi
done
((${#todo[@]})) || exit 0

started=$SECONDS
declare -A plan_pid
for name in "${todo[@]}"; do
  plan_tool "$name" &
  plan_pid[$name]=$!
done
log "building ${#todo[@]} tool(s): ${todo[*]} (logs: $LOGS/build-<tool>.log)"

heartbeat_pid=
stop_heartbeat() { [[ -n $heartbeat_pid ]] && kill "$heartbeat_pid" 2>/dev/null; heartbeat_pid=; }
trap 'stop_heartbeat; jobs -p | xargs -r kill 2>/dev/null' EXIT

step=0
for name in "${todo[@]}"; do
  step=$((step + 1))
  version=$(tool_version "$name")
  logfile=$LOGS/build-$name.log
  tool_started=$SECONDS
  label="[$step/${#todo[@]}] $name $version"
  log "$label: resolving modules and downloading sources"
  wait "${plan_pid[$name]}" || fail_with_log "$label: module graph and build plan (go mod download, go build -n) in $(tool_dir "$name")" "$logfile"
  log "$label: compiling $(tool_outputs "$name")"
  (
    while sleep "$HEARTBEAT_SECONDS"; do
      log "$label: still compiling, $(elapsed $((SECONDS - tool_started))) on this tool, $(elapsed $((SECONDS - started))) in all"
    done
  ) &
  heartbeat_pid=$!
  echo "== compile $name ($(date -u +%FT%TZ))" >>"$logfile"
  if ! go_build "$name" >>"$logfile" 2>&1; then
    stop_heartbeat
    fail_with_log "$label: go build in $(tool_dir "$name")" "$logfile"
  fi
  stop_heartbeat
  log "$label: built in $(elapsed $((SECONDS - tool_started)))"
  echo "$name $version $((SECONDS - tool_started))" >>"$LOGS/build-times.txt"
done
log "built ${#todo[@]} tool(s) in $(elapsed $((SECONDS - started))); binaries in $MODELFLEET_CACHE/bin"
