"""The package's layout rules: every module says what it owns in its first line, handlers/ is
kopf wiring only, and no module reaches into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.cluster import REPO_ROOT

pytestmark = pytest.mark.unit

PACKAGE = REPO_ROOT / "operator" / "modelfleet"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_says_what_it_owns(path: Path) -> None:
    docstring = ast.get_docstring(_tree(path))
    assert docstring, f"{path.relative_to(REPO_ROOT)} has no module docstring"
    assert len(docstring.splitlines()[0]) > 20, "the first line should say what the module owns"


def test_no_module_imports_a_private_name_of_another() -> None:
    offences = []
    for path in MODULES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modelfleet"):
                offences += [
                    f"{path.relative_to(PACKAGE)}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_")
                ]
    assert offences == []


def test_handlers_hold_only_the_kopf_wiring() -> None:
    handlers = sorted(p.name for p in (PACKAGE / "handlers").glob("*.py"))
    assert handlers == ["__init__.py", "operator.py"]
    source = (PACKAGE / "handlers" / "operator.py").read_text()
    assert "import kopf" in source
