#!/usr/bin/env bash
# The e2e tier, for machines with Docker: a kind cluster, modelfleet's images built and loaded
# into it, the chart installed from charts/modelfleet, then `pytest -m e2e tests/e2e`.
#
#   hack/e2e-kind.sh            create (or reuse) the cluster, build, install, test
#   hack/e2e-kind.sh --down     delete the cluster
#
# Environment: KIND_CLUSTER (modelfleet-e2e), KIND_NODE_IMAGE (a pinned kindest/node),
# TAG (e2e), KEEP_CLUSTER=1 to leave the cluster running after the tests.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source hack/lib.sh
source hack/versions.sh

KIND_CLUSTER=${KIND_CLUSTER:-modelfleet-e2e}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-kindest/node:v1.34.0}
KIND_VERSION=${KIND_VERSION:-v0.30.0}
TAG=${TAG:-e2e}
REGISTRY=ghcr.io/modelfleet
RELEASE=modelfleet
RELEASE_NAMESPACE=modelfleet-system
WORK=$MODELFLEET_CACHE/e2e/$KIND_CLUSTER
KUBECONFIG_FILE=$WORK/kubeconfig

log() { printf '[e2e-kind] %s\n' "$*" >&2; }

need() {
  command -v "$1" >/dev/null 2>&1 || { log "$1 is required: $2"; exit 1; }
}

# kind from its Go module, once per version, into the same cache as the other tools.
ensure_kind() {
  KIND=$MODELFLEET_CACHE/bin/kind-$KIND_VERSION/kind
  if [[ ! -x $KIND ]]; then
    need go "install Go, or put kind $KIND_VERSION at $KIND"
    log "building kind $KIND_VERSION"
    mkdir -p "$(dirname "$KIND")"
    GOBIN=$(dirname "$KIND") CGO_ENABLED=0 go install "sigs.k8s.io/kind@$KIND_VERSION"
  fi
}

ensure_kind
if [[ ${1:-} == --down ]]; then
  "$KIND" delete cluster --name "$KIND_CLUSTER"
  exit 0
fi

need docker "the e2e tier runs kind, which runs in Docker"
docker info >/dev/null 2>&1 || { log "the Docker daemon is not reachable"; exit 1; }
bash hack/python-env.sh dev
bash hack/build-tools.sh
HELM=$HELM_BIN/helm
KUBECTL=$K8S_BIN/kubectl
mkdir -p "$WORK"

if "$KIND" get clusters | grep -qx "$KIND_CLUSTER"; then
  log "reusing kind cluster $KIND_CLUSTER"
else
  log "creating kind cluster $KIND_CLUSTER ($KIND_NODE_IMAGE)"
  "$KIND" create cluster --name "$KIND_CLUSTER" --image "$KIND_NODE_IMAGE" --wait 120s
fi
"$KIND" get kubeconfig --name "$KIND_CLUSTER" >"$KUBECONFIG_FILE"
export KUBECONFIG=$KUBECONFIG_FILE

cleanup() {
  local rc=$?
  if ((rc != 0)); then
    log "failed (exit $rc); operator logs:"
    "$KUBECTL" -n "$RELEASE_NAMESPACE" logs "deployment/$RELEASE" --tail=200 >&2 || true
  fi
  if [[ -z ${KEEP_CLUSTER:-} ]]; then
    "$KIND" delete cluster --name "$KIND_CLUSTER" || true
  fi
}
trap cleanup EXIT

log "building images with tag $TAG"
REGISTRY=$REGISTRY bash hack/build-images.sh --tag "$TAG" operator downloader
for image in operator downloader; do
  "$KIND" load docker-image --name "$KIND_CLUSTER" "$REGISTRY/$image:$TAG"
done

log "installing the chart"
"$HELM" upgrade --install "$RELEASE" charts/modelfleet \
  --namespace "$RELEASE_NAMESPACE" --create-namespace \
  --set image.tag="$TAG" \
  --set image.pullPolicy=Never \
  --set defaultImages.downloader.tag="$TAG" \
  --wait --timeout 5m
"$KUBECTL" -n "$RELEASE_NAMESPACE" rollout status "deployment/$RELEASE" --timeout=180s

log "running the e2e tier"
export MODELFLEET_TEST_KUBECONFIG=$KUBECONFIG_FILE
export MODELFLEET_E2E_RELEASE_NAMESPACE=$RELEASE_NAMESPACE
.venv/bin/pytest -m e2e tests/e2e "$@"
