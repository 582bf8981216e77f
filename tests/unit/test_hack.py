"""The README's scripts as a new user meets them: a failing step says what failed and why, and
every command the README and docs/ give answers ``--help`` as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cluster import REPO_ROOT

pytestmark = pytest.mark.unit

DOCUMENTS = (REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")))
# A documented command: the program, then its subcommands up to the first option or argument.
COMMAND = re.compile(
    r"^\s*(?:\$ )?(?P<program>modelfleet|python benchmarks/[a-z_]+\.py|\.venv/bin/python "
    r"benchmarks/[a-z_]+\.py)(?P<words>(?: [a-z][a-z-]*)*)"
)
# Words after `modelfleet` that are arguments, not subcommands (repo ids are caught by their /).
ARGUMENT_WORDS = frozenset({"is", "and", "or"})


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


INLINE_CODE = re.compile(r"`([^`\n]+)`")


def documented_commands() -> list[str]:
    """Every `modelfleet ...` and `python benchmarks/...` command the docs give: a line of a
    code block, or an inline code span."""
    commands: set[str] = set()
    for document in DOCUMENTS:
        in_code = False
        for line in document.read_text().splitlines():
            if line.lstrip().startswith("```"):
                in_code = not in_code
                continue
            candidates = [line] if in_code else INLINE_CODE.findall(line)
            for candidate in candidates:
                match = COMMAND.match(candidate)
                if match is None:
                    continue
                words = [w for w in match["words"].split() if w not in ARGUMENT_WORDS]
                commands.add(" ".join([match["program"], *words]))
    return sorted(commands)


def test_the_docs_give_commands_to_check() -> None:
    commands = documented_commands()
    assert "python benchmarks/download.py" in commands
    assert "modelfleet model download" in commands


@pytest.mark.parametrize("command", documented_commands())
def test_documented_command_answers_help_from_the_repository_root(command: str) -> None:
    program, *words = command.split()
    if program == "modelfleet":
        argv = [str(Path(sys.executable).parent / "modelfleet"), *words]
    else:  # python benchmarks/x.py, run by this environment's interpreter as the docs say
        argv = [sys.executable, *words]
    result = run([*argv, "--help"])
    assert result.returncode == 0, f"{command} --help:\n{result.stdout}{result.stderr}"
    assert "usage" in (result.stdout + result.stderr).lower()


def test_a_failing_build_step_names_the_tool_the_command_and_the_log(tmp_path: Path) -> None:
    # An empty module cache with the module proxy turned off: the first Go command fails.
    env = {
        "MODELFLEET_CACHE": str(tmp_path / "cache"),
        "GOMODCACHE": str(tmp_path / "gomod"),
        "GOPROXY": "off",
    }
    result = run(["bash", "hack/build-tools.sh", "--check", "etcd"], env)
    assert result.returncode != 0
    out = result.stderr
    log = tmp_path / "cache" / "logs" / "build-etcd.log"
    assert "[build-tools] FAILED: etcd v" in out, out
    assert "go mod download" in out
    assert "module lookup disabled by GOPROXY=off" in out, "the log's last lines are shown"
    assert f"full log: {log}" in out
    assert log.is_file()


def test_a_failing_command_in_any_hack_script_prints_one_line(tmp_path: Path) -> None:
    script = tmp_path / "step.sh"
    script.write_text(f'source "{REPO_ROOT}/hack/lib.sh"\necho before\nfalse\necho after\n')
    result = run(["bash", str(script)])
    assert result.returncode == 1
    assert result.stdout == "before\n"
    assert result.stderr == "[step] FAILED (exit 1) at line 3: false\n"


def test_an_unknown_argument_is_refused_with_a_reason() -> None:
    result = run(["bash", "hack/build-tools.sh", "kubelet"])
    assert result.returncode != 0
    assert "[build-tools] FAILED: unknown argument: kubelet" in result.stderr


def test_every_hack_script_reports_failures() -> None:
    for script in sorted((REPO_ROOT / "hack").glob("*.sh")):
        if script.name in {"lib.sh", "versions.sh"}:
            continue
        text = script.read_text()
        assert "/lib.sh" in text and "set -euo pipefail" not in text, (
            f"{script.name} must source hack/lib.sh so that no failure is silent"
        )
