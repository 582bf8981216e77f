"""The README's two commands on a fresh machine: a fresh clone, every cache empty.

Clones the repository's HEAD into ``--workdir``, points ``MODELFLEET_CACHE``, ``GOMODCACHE``,
``GOCACHE``, ``PIP_CACHE_DIR`` and ``HOME`` at empty directories there, then times
``bash hack/demo.sh`` (stopping its cluster afterwards) and ``bash hack/test.sh``, and reads
each tool's build time from the cache's ``logs/build-times.txt``. Prints a markdown section;
``--write FILE`` replaces the ``## Cold start`` section of FILE.

    python benchmarks/cold_start.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SECTION = re.compile(r"^## Cold start\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)


def run_timed(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[int, float]:
    """Run ``command``, its output to ``log``; (exit code, seconds)."""
    started = time.monotonic()
    with log.open("wb") as out:
        code = subprocess.run(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        ).returncode
    return code, time.monotonic() - started


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def build_times(cache: Path) -> list[tuple[str, str, int]]:
    """(tool, version, seconds) from the cache's build log, in build order."""
    path = cache / "logs" / "build-times.txt"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        name, version, seconds = line.split()
        rows.append((name, version, int(seconds)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/modelfleet-cold"))
    parser.add_argument("--skip-tests", action="store_true", help="time only hack/demo.sh")
    parser.add_argument("--write", type=Path, help="replace the '## Cold start' section here")
    args = parser.parse_args()

    work = args.workdir.resolve()
    if work.exists():
        shutil.rmtree(work)
    clone, cache = work / "clone", work / "cache"
    for directory in ("home", "gomod", "gocache", "pip"):
        (work / directory).mkdir(parents=True)
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env = {
        **os.environ,
        "HOME": str(work / "home"),
        "MODELFLEET_CACHE": str(cache),
        "GOMODCACHE": str(work / "gomod"),
        "GOCACHE": str(work / "gocache"),
        "PIP_CACHE_DIR": str(work / "pip"),
        # pyenv finds its versions from HOME unless told where they are.
        "PYENV_ROOT": os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv")),
    }
    env.pop("VIRTUAL_ENV", None)
    print(f"cold run of {commit} in {work}", file=sys.stderr)
    demo_code, demo_seconds = run_timed(["bash", "hack/demo.sh"], clone, env, work / "demo.log")
    demo_tools = build_times(cache)
    subprocess.run(
        ["bash", "hack/cluster.sh", "down"], cwd=clone, env=env, capture_output=True, check=False
    )
    test_code, test_seconds = 0, 0.0
    if not args.skip_tests:
        test_code, test_seconds = run_timed(["bash", "hack/test.sh"], clone, env, work / "test.log")
    tools = build_times(cache)

    load = os.getloadavg()
    lines = [
        "## Cold start",
        "",
        f"A fresh clone of {commit} with every cache empty (`MODELFLEET_CACHE`, `GOMODCACHE`,"
        " `GOCACHE`, `PIP_CACHE_DIR`, `HOME`), so every module and wheel is downloaded and"
        f" every tool compiled. {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" load average {load[0]:.1f} after the run. Run: `python benchmarks/cold_start.py"
        " --write docs/benchmarks.md`.",
        "",
        "| command | wall time | result |",
        "|---|---|---|",
        f"| `bash hack/demo.sh` (tools, engine, cluster, Model Ready, a completion) |"
        f" {minutes(demo_seconds)} | {'passed' if demo_code == 0 else f'exit {demo_code}'} |",
    ]
    if not args.skip_tests:
        lines.append(
            f"| then `bash hack/test.sh` (helm, promtool, kstatus, the whole suite) |"
            f" {minutes(test_seconds)} | {'passed' if test_code == 0 else f'exit {test_code}'} |"
        )
    lines += ["", "| step | built or installed in | by |", "|---|---|---|"]
    demo_names = {name for name, _, _ in demo_tools}
    for name, version, seconds in tools:
        by = "`hack/demo.sh`" if name in demo_names else "`hack/test.sh`"
        lines.append(f"| {name} {version} | {minutes(seconds)} | {by} |")
    lines.append("")
    section = "\n".join(lines) + "\n"
    print(section)
    if args.write:
        text = args.write.read_text()
        text = SECTION.sub(section, text) if SECTION.search(text) else text + "\n" + section
        args.write.write_text(text)
    return demo_code or test_code


if __name__ == "__main__":
    sys.exit(main())
