#!/usr/bin/env bash
# The main job, from a fresh clone: build (once) and start the local control plane with
# simulated GPU nodes, install the CRDs, start a local Hugging Face protocol hub with a tiny
# model and the operator, then apply examples/model-tiny.yaml, wait until it is Ready (its
# serving pods run a real CPU vLLM engine) and ask it for a completion through its Service.
#
# Everything keeps running afterwards (try `kubectl get mfm`); stop it all with
#   bash hack/cluster.sh down
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source hack/lib.sh
source hack/versions.sh

bash hack/cluster.sh up
state=$MODELFLEET_CACHE/clusters/modelfleet
export KUBECONFIG=$state/kubeconfig
export PATH=$K8S_BIN:$PWD/.venv/bin:$PATH

echo "== CRDs"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
# kubectl wait fails at once, instead of waiting, while a new CRD has no conditions yet.
for attempt in $(seq 1 30); do
  kubectl wait --for=condition=Established crd/models.modelfleet.io crd/finetunejobs.modelfleet.io \
    --timeout=60s >/dev/null 2>&1 && break
  [[ $attempt == 30 ]] && { echo "the CRDs did not become Established" >&2; exit 1; }
  sleep 1
done

# Start a background process once; its pid goes where `hack/cluster.sh down` finds it.
start_once() {
  local name=$1; shift
  local pid_file=$state/$name.pid
  if [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "== $name already running"
    return
  fi
  echo "== starting $name (log: $state/$name.log)"
  setsid "$@" >"$state/$name.log" 2>&1 < /dev/null &
  echo $! >"$pid_file"
}

start_once hub .venv/bin/python -m tests.hubserver --port 18765
start_once operator .venv/bin/modelfleet run

echo "== applying examples/model-tiny.yaml"
kubectl apply -f examples/model-tiny.yaml
started=$SECONDS
# Download, verify, then two vLLM engines start (about a minute on 2 cores) and each answers a
# smoke completion before it counts as Ready.
if ! kubectl wait --for=condition=Ready model/tiny --timeout=900s; then
  kubectl get mfm tiny -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2 || true
  die "examples/model-tiny.yaml did not become Ready; operator log: $state/operator.log, pods: $state/agent/pods/"
fi
echo "== Ready after $((SECONDS - started))s"
kubectl get mfm
kubectl get deployment,pods -l modelfleet.io/model=tiny -o wide
echo
echo "== a completion through the Service's endpoints"
modelfleet dev ask tiny --prompt "Hello" || die "the Model is Ready but did not answer"
echo "== apply to first answer: $((SECONDS - started))s"
echo
echo "export KUBECONFIG=$KUBECONFIG   # then: kubectl get mfm; kubectl describe mfm tiny"
echo "stop everything: bash hack/cluster.sh down"
