#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install modelfleet into it,
# editable, with the extras named as arguments (default: dev). Prints nothing when up to date:
# extras installed before are kept, so the demo's `dev` after the tests' `dev trainer
# modelscope` installs nothing.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source hack/lib.sh

python=${PYTHON:-python3}
stamp=.venv/.modelfleet-installed
project=$(sha256sum pyproject.toml | cut -c1-16)

declare -A extras=()
(($#)) || set -- dev
for extra in "$@"; do extras[$extra]=1; done
if [[ -f $stamp ]] && read -r stamped_project stamped_extras <"$stamp" && [[ $stamped_project == "$project" ]]; then
  missing=0
  for extra in "${!extras[@]}"; do
    [[ ,$stamped_extras, == *,$extra,* ]] || missing=1
  done
  ((missing)) || exit 0
  for extra in ${stamped_extras//,/ }; do extras[$extra]=1; done
fi
wanted=$(printf '%s\n' "${!extras[@]}" | sort | paste -sd, -)

if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
echo "[python-env] installing modelfleet[$wanted] into .venv" >&2
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[$wanted]"
echo "$project $wanted" >"$stamp"
