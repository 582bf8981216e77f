# shellcheck shell=bash
# Sourced by every hack/ script: a failure anywhere prints one line that names the script, the
# line and the command, so no script ever ends with a silent non-zero exit.
set -Eeuo pipefail

HACK_SCRIPT=$(basename "${BASH_SOURCE[1]:-${0}}" .sh)

on_error() {
  local rc=$1 line=$2 command=$3
  printf '[%s] FAILED (exit %s) at line %s: %s\n' "$HACK_SCRIPT" "$rc" "$line" "$command" >&2
}
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR

# die MESSAGE: stop with a one-line reason.
die() {
  trap - ERR
  printf '[%s] FAILED: %s\n' "$HACK_SCRIPT" "$*" >&2
  exit 1
}

# fail_with_log WHAT LOG: stop, printing what failed, the last lines of its log and its path.
fail_with_log() {
  local what=$1 log=$2
  trap - ERR
  {
    printf '[%s] FAILED: %s\n' "$HACK_SCRIPT" "$what"
    printf '[%s] last lines of %s:\n' "$HACK_SCRIPT" "$log"
    tail -n "${LOG_TAIL_LINES:-25}" "$log" | sed 's/^/    /'
    printf '[%s] full log: %s\n' "$HACK_SCRIPT" "$log"
  } >&2
  exit 1
}

# elapsed SECONDS: "12m05s".
elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
