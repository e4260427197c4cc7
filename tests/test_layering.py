"""The import rule of DESIGN.md, whole.

- `common` imports neither `master` nor `worker`; `worker` never imports `master`;
- `master` imports from `worker` only the names of `MASTER_FROM_WORKER`: the actors it
  launches, the ensemble job they run, the checks its CLI makes;
- across packages, only public names: those of the package's `__all__` (for `common`, a
  module of its `__all__` and a name of that module's `__all__`); and no module imports
  another's `_private` name (the top package's own files may use its private modules:
  `gridless/__init__.py` imports `gridless._layout`, which finds the three packages);
- imports are absolute and under `gridless.` (a bare `worker.loop` is someone else's).

`violations(root)` checks a tree laid out like this repository; the planted tests run it
on a copy in a temporary folder, never on the tree itself.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest

import gridless.common
import gridless.master
import gridless.worker

ROOT = Path(__file__).parents[1]
PACKAGES = ("common", "worker", "master")
FORBIDDEN = {"common": {"master", "worker"}, "worker": {"master"}}

# What the master may import from the worker, by defining module (DESIGN.md: "the actor
# class it launches, and the preflight checks the CLI runs", and the ensemble job).
MASTER_FROM_WORKER: dict[str, set[str]] = {
    # master/launcher.py: the Ray actors, and the worker loop of the in-process fake
    "gridless.worker.actor": {"TaskActor", "WorkerActor"},
    "gridless.worker.loop": {"run_worker"},
    # master/ensemble_jobs.py: the ensemble job those actors run
    "gridless.worker.ensemble_jobs": {
        "EnsembleMember",
        "EnsembleOutcome",
        "EnsembleRequest",
        "build_ensembles",
    },
    # master/cli: the checks before a study starts
    "gridless.worker.diagnostics.preflight": {"PreflightReport", "preflight"},
    "gridless.worker.diagnostics.smoke": {"smoke_check"},
    "gridless.worker.function_runner": {"load_train_function"},
    "gridless.worker.trainer": {"check_params", "custom_factory"},
}

_DOTTED = re.compile(r"gridless\.(common|worker|master)(\.\w+)*")


def _sources(root: Path) -> list[tuple[str, Path]]:
    """(package, file) of every module: the three packages (the top folders that
    pyproject.toml's package-dir maps to gridless.common, .worker and .master) and
    gridless's own files."""
    found = [(p, path) for p in PACKAGES for path in sorted((root / p).rglob("*.py"))]
    return found + [("gridless", path) for path in sorted((root / "gridless").glob("*.py"))]


def _imports(tree: ast.AST) -> list[tuple[int, str, str | None, int]]:
    """(line, module, imported name or None for `import module`, level) of each import."""
    found: list[tuple[int, str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            found += [(node.lineno, module, alias.name, node.level) for alias in node.names]
    return found


def _target(module: str) -> str | None:
    """The gridless package an absolute import reaches (`gridless.worker.loop`: worker)."""
    parts = module.split(".")
    if parts[0] == "gridless" and len(parts) > 1 and parts[1] in PACKAGES:
        return parts[1]
    if parts[0] == "gridless":
        return "gridless"
    return None


def _public_problem(package: str, target: str, module: str, name: str | None) -> str | None:
    """Why an import from another package is not of a public name (None when it is)."""
    parts = module.split(".")
    if target == "common":
        sub = parts[2] if len(parts) > 2 else name
        if sub not in gridless.common.__all__:
            return f"gridless.common.{sub} is not in gridless.common.__all__"
        if len(parts) > 3:
            return f"{module} is inside gridless.common.{sub}: import from the module"
        if len(parts) == 3 and name is not None:
            exported = importlib.import_module(module).__all__
            if name not in exported:
                return f"{name} is not in {module}.__all__"
        return None
    homes = {"worker": gridless.worker._HOMES, "master": gridless.master._HOMES}[target]
    if name is None:
        return f"import {module}: import public names, not a module"
    if module == f"gridless.{target}":
        module = homes.get(name, module)
    if name not in homes:
        return f"{module}.{name} is not in gridless.{target}.__all__"
    if homes[name] != module:
        return f"{module}.{name}: gridless.{target} exports it from {homes[name]}"
    if package == "master" and name not in MASTER_FROM_WORKER.get(module, set()):
        return f"{module}.{name} is not in the master's allow-list (MASTER_FROM_WORKER)"
    return None


def violations(root: Path) -> list[str]:
    """Every breach of the import rule in the tree at `root`, as `path:line: what`."""
    found: list[str] = []
    for package, path in _sources(root):
        where = path.relative_to(root).as_posix()
        found += _file_violations(package, where, path.read_text(encoding="utf-8"))
    return found


@functools.cache
def _file_violations(package: str, where: str, text: str) -> list[str]:
    """The breaches of one module of `package` (remembered: a planted test changes one)."""
    found: list[str] = []
    tree = ast.parse(text)
    for line, module, name, level in _imports(tree):
        shown = f"{module}.{name}" if name else module
        if level > 0:
            found.append(f"{where}:{line}: relative import {'.' * level}{shown}")
            continue
        if module.split(".")[0] in PACKAGES:
            found.append(f"{where}:{line}: {shown}: the installed name is gridless.{module}")
            continue
        private = [part for part in [*module.split("."), name or ""] if part.startswith("_")]
        if private and _target(module) is not None and not (package == "gridless" == module):
            found.append(f"{where}:{line}: {shown} is private to its module")
            continue
        target = _target(module)
        if target is None or target in (package, "gridless"):
            continue
        if target in FORBIDDEN.get(package, set()):
            found.append(f"{where}:{line}: {shown} ({package} never imports {target})")
            continue
        problem = _public_problem(package, target, module, name)
        if problem is not None:
            found.append(f"{where}:{line}: {problem}")
    for node in ast.walk(tree):  # importlib.import_module("gridless.master.app") and the like
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _DOTTED.fullmatch(node.value)
            if match and match.group(1) in FORBIDDEN.get(package, set()):
                found.append(f"{where}:{node.lineno}: names {node.value!r}")
    return found


def test_the_tree_keeps_the_import_rule() -> None:
    assert violations(ROOT) == []


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages' sources, copied once into a temporary folder."""
    root = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("static"))
    (root / "gridless").mkdir()
    for path in (ROOT / "gridless").glob("*.py"):
        shutil.copy(path, root / "gridless" / path.name)
    return root


@pytest.mark.parametrize(
    ("file", "planted", "expected"),
    [
        (
            "worker/loop.py",
            "from gridless.master import create_app",
            "worker/loop.py:{line}: gridless.master.create_app (worker never imports master)",
        ),
        (
            "worker/trial.py",
            "    from gridless.master.app import create_app",  # inside a function
            "worker/trial.py:{line}: gridless.master.app.create_app (worker never imports master)",
        ),
        (
            "common/spec.py",
            "import gridless.worker.loop",
            "common/spec.py:{line}: gridless.worker.loop (common never imports worker)",
        ),
        (
            "master/routes/ensembles.py",
            "from gridless.worker.trainer import make_trainer",
            "master/routes/ensembles.py:{line}: gridless.worker.trainer.make_trainer is not "
            "in gridless.worker.__all__",
        ),
        (
            "master/launcher.py",
            "from gridless.worker import Trial",
            "master/launcher.py:{line}: gridless.worker.trial.Trial is not in the master's "
            "allow-list (MASTER_FROM_WORKER)",
        ),
        (
            "master/launcher.py",
            "from gridless.worker.actor import run_worker",
            "master/launcher.py:{line}: gridless.worker.actor.run_worker: gridless.worker "
            "exports it from gridless.worker.loop",
        ),
        (
            "master/app.py",
            "import gridless.worker.actor",
            "master/app.py:{line}: import gridless.worker.actor: import public names, not a "
            "module",
        ),
        (
            "master/app.py",
            "from gridless.common.checkpoints import _split_relpath",
            "master/app.py:{line}: gridless.common.checkpoints._split_relpath is private to "
            "its module",
        ),
        (
            "worker/loop.py",
            "from gridless.worker.trainer import _numpy",
            "worker/loop.py:{line}: gridless.worker.trainer._numpy is private to its module",
        ),
        (
            "worker/loop.py",
            "from gridless.common.spec import yaml",
            "worker/loop.py:{line}: yaml is not in gridless.common.spec.__all__",
        ),
        (
            "master/app.py",
            "from gridless.common.migrate import upgrade",
            "master/app.py:{line}: gridless.common.migrate is not in gridless.common.__all__",
        ),
        (
            "worker/heartbeat.py",
            "from worker.loop import run_worker",
            "worker/heartbeat.py:{line}: worker.loop.run_worker: the installed name is "
            "gridless.worker.loop",
        ),
        (
            "common/spec.py",
            "from gridless import _layout",
            "common/spec.py:{line}: gridless._layout is private to its module",
        ),
        (
            "worker/heartbeat.py",
            'APP = importlib.import_module("gridless.master.app")',
            "worker/heartbeat.py:{line}: names 'gridless.master.app'",
        ),
    ],
)
def test_a_planted_breach_is_found(copy: Path, file: str, planted: str, expected: str) -> None:
    path = copy / file
    original = path.read_text(encoding="utf-8")
    if planted.startswith("    "):
        body = "\n\ndef _planted() -> None:\n" + planted + "\n"
        line = len(original.splitlines()) + 4
    else:
        body = "\n" + planted + "\n"
        line = len(original.splitlines()) + 2
    path.write_text(original + body, encoding="utf-8")
    try:
        assert violations(copy) == [expected.format(line=line)]
    finally:
        path.write_text(original, encoding="utf-8")


def test_the_allow_list_is_public_and_all_of_it_used() -> None:
    """Every allowed name is exported by the worker and imported by some master module:
    the list says what the master needs, no more."""
    homes = gridless.worker._HOMES
    allowed = {(module, name) for module, names in MASTER_FROM_WORKER.items() for name in names}
    assert {(homes[name], name) for _, name in allowed if name in homes} == allowed
    used = set()
    for package, path in _sources(ROOT):
        if package == "master":
            tree = ast.parse(path.read_text(encoding="utf-8"))
            used |= {(m, n) for _, m, n, _ in _imports(tree) if (m, n) in allowed}
    assert used == allowed


@pytest.mark.parametrize("package", [gridless.common, gridless.worker, gridless.master])
def test_exported_members(package: ModuleType) -> None:
    """Each package's `__all__` resolves: a module of `common`; for `worker` and `master`,
    the very object its home module defines and exports (httpx's test_exported_members)."""
    exported = package.__all__
    assert exported == sorted(exported)
    if package is gridless.common:
        for module in exported:
            assert importlib.import_module(f"gridless.common.{module}").__all__
        return
    homes = package._HOMES
    for name in exported:
        home = importlib.import_module(homes[name])
        assert name in home.__all__, (home.__name__, name)
        assert getattr(package, name) is getattr(home, name)


def test_installed_names_leave_common_to_the_user() -> None:
    """The distribution is one package, `gridless`: a user's `common` is theirs."""
    import gridless.common.spec

    assert gridless.common.spec.__name__ == "gridless.common.spec"
