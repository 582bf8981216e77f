#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install modelfleet into it,
# editable, with the extras named as arguments (default: dev). Prints nothing when up to date.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

extras=${*:-dev}
extras=${extras// /,}
python=${PYTHON:-python3}
stamp=.venv/.modelfleet-installed
want="$(sha256sum pyproject.toml | cut -c1-16) $extras"

if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "[python-env] installing modelfleet[$extras] into .venv" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
  echo "$want" >"$stamp"
fi
