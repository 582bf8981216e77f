#!/usr/bin/env bash
# Build modelfleet's images with Docker (BuildKit) from the repository root.
#
#   hack/build-images.sh [--tag TAG] [--push] [operator|downloader|trainer ...]
#
# Images are named $REGISTRY/<name>:$TAG. REGISTRY defaults to the chart's default
# (ghcr.io/modelfleet) and TAG to the chart's appVersion, so a default build matches the default
# values of charts/modelfleet. PLATFORM (e.g. linux/amd64) is passed to --platform when set.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source hack/lib.sh

REGISTRY=${REGISTRY:-ghcr.io/modelfleet}
TAG=${TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/modelfleet/Chart.yaml)}
PUSH=0
IMAGES=()

usage() { sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

while (($#)); do
  case $1 in
    --tag) TAG=${2:?--tag needs a value}; shift 2 ;;
    --push) PUSH=1; shift ;;
    -h | --help) usage; exit 0 ;;
    operator | downloader | trainer) IMAGES+=("$1"); shift ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
((${#IMAGES[@]})) || IMAGES=(operator downloader trainer)

if [[ -z $TAG || $TAG == latest ]]; then
  echo "refusing to build with tag '${TAG}': pin a version (--tag or TAG=)" >&2
  exit 2
fi
if ! command -v docker >/dev/null 2>&1; then
  echo "docker is not installed: the images can only be built where Docker runs" >&2
  exit 1
fi

platform_args=()
[[ -n ${PLATFORM:-} ]] && platform_args=(--platform "$PLATFORM")

for image in "${IMAGES[@]}"; do
  ref=$REGISTRY/$image:$TAG
  echo "== building $ref" >&2
  DOCKER_BUILDKIT=1 docker build "${platform_args[@]}" \
    --file "images/$image/Dockerfile" \
    --tag "$ref" \
    --label "org.opencontainers.image.version=$TAG" \
    .
  if ((PUSH)); then
    docker push "$ref"
  fi
done
