"""The import rules of DESIGN.md: common imports neither master nor worker; worker never master."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FORBIDDEN = {"common": {"master", "worker"}, "worker": {"master"}}


def _package(module: str) -> str:
    """`gridless.worker.loop` -> `worker`; the bare `worker.loop` of a stray import too."""
    parts = module.split(".")
    return parts[1] if parts[0] == "gridless" and len(parts) > 1 else parts[0]


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(_package(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(_package(node.module))
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_down_only(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
        if imported_packages(path) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from gridless.master.app import create_app\nimport gridless.worker.loop\n")
    assert imported_packages(bad) >= {"master", "worker"}


def test_installed_names_leave_common_to_the_user() -> None:
    """The distribution is one package, `gridless` (issue 14): a user's `common` is theirs."""
    import gridless.common.spec

    assert gridless.common.spec.__name__ == "gridless.common.spec"
