"""The package mapping: the top folders common/, worker/ and master/ are gridless.common,
gridless.worker and gridless.master, through pyproject.toml's package-dir in the wheel
and gridless/_layout.py in a checkout, with no symlinks for a file system to lack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

import gridless
import gridless._layout
import gridless.common
import gridless.master
import gridless.worker

ROOT = Path(__file__).parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "setuptools"
]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS["package-dir"]
SOURCES = ("pyproject.toml", "README.md", *sorted(set(PACKAGE_DIR.values())))
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc")

# Imports the package, its app and the CLI, and says where they came from.
PROBE = textwrap.dedent(
    """
    import importlib.util, json, sys
    import gridless, gridless.master.app, gridless.master.cli, gridless.common.migrate
    from gridless._layout import TopFolderFinder
    print(json.dumps({
        "gridless": gridless.__file__,
        "app": gridless.master.app.__file__,
        "head": gridless.common.migrate.head_revision(),
        "finder": any(isinstance(f, TopFolderFinder) for f in sys.meta_path),
        "common": importlib.util.find_spec("common") is not None,
    }))
    """
)


def _installed_files(root: Path) -> set[str]:
    """What the wheel must hold: every file of the mapped folders, at its installed path."""
    files = set()
    for package, folder in PACKAGE_DIR.items():
        for path in (root / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                relative = path.relative_to(root / folder).as_posix()
                files.add(f"{package.replace('.', '/')}/{relative}")
    return files


def _probe(cwd: Path, python_path: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(python_path)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return found


def test_no_symlinks_in_the_packages() -> None:
    """A checkout on a file system without symlinks gets the same tree."""
    links = [
        path.relative_to(ROOT).as_posix()
        for folder in sorted(set(PACKAGE_DIR.values()))
        for path in [ROOT / folder, *(ROOT / folder).rglob("*")]
        if path.is_symlink()
    ]
    assert links == []


def test_every_folder_is_a_listed_package() -> None:
    """pyproject.toml lists the packages by hand (package-dir needs it): a new folder
    that is not listed would silently stay out of the wheel."""
    folders = set()
    for package, folder in PACKAGE_DIR.items():
        for path in [ROOT / folder, *(ROOT / folder).rglob("*")]:
            if path.is_dir() and path.name != "__pycache__":
                relative = path.relative_to(ROOT / folder).parts
                folders.add(".".join([package, *relative]))
    assert sorted(folders) == sorted(SETUPTOOLS["packages"])


def test_the_checkout_maps_what_package_dir_maps() -> None:
    """gridless/_layout.py and package-dir agree, and the packages are the top folders."""
    mapped = {name: folder for name, folder in PACKAGE_DIR.items() if name != "gridless"}
    assert mapped == {f"gridless.{name}": name for name in gridless._layout.SUBPACKAGES}
    assert PACKAGE_DIR["gridless"] == "gridless"
    for package in (gridless.common, gridless.worker, gridless.master):
        folder = ROOT / PACKAGE_DIR[package.__name__]
        assert Path(package.__file__ or "").resolve() == (folder / "__init__.py").resolve()


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the files the wheel is built from (copied, so no symlink survives)."""
    root = tmp_path_factory.mktemp("checkout")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, symlinks=False, ignore=SKIPPED)
        else:
            shutil.copy(source, root / name)
    return root


def test_a_copied_checkout_imports(checkout: Path) -> None:
    """Run from a plain copy (the repository root on sys.path), gridless finds its
    packages in the copy's top folders."""
    found = _probe(checkout, checkout)
    assert found["gridless"] == str(checkout / "gridless" / "__init__.py")
    assert found["app"] == str(checkout / "master" / "app.py")
    assert found["finder"] is True
    assert found["head"]  # the migrations folder is found through the mapping


@pytest.mark.slow
def test_the_wheel_holds_every_file_once_under_gridless(checkout: Path, tmp_path: Path) -> None:
    """The wheel built from the copy (PEP 517, as `pip wheel .` does) holds every module
    and data file once under gridless/, occupies no other top-level name, and imports
    from a folder outside the checkout with no finder of ours."""
    out = tmp_path / "wheel"
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--wheel-dir", str(out), str(checkout)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("gridless-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        site = tmp_path / "site"  # a pure-Python wheel installs as its files, unpacked
        archive.extractall(site)
    assert len(names) == len(set(names))
    content = {name for name in names if ".dist-info/" not in name}
    assert content == _installed_files(checkout)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    assert {name.split("/")[0] for name in names} == {"gridless", f"gridless-{version}.dist-info"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = _probe(elsewhere, site)
    assert found["gridless"] == str(site / "gridless" / "__init__.py")
    assert found["app"] == str(site / "gridless" / "master" / "app.py")
    assert found["finder"] is False
    assert found["head"]
    assert found["common"] is False  # the user's own `common` stays free
