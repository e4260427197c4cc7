"""Where `gridless.common`, `gridless.worker` and `gridless.master` live.

The repository keeps them as the top folders `common/`, `worker/` and `master/`;
pyproject.toml's `package-dir` installs them inside `gridless/`, so a wheel needs
nothing from this module. Run from a checkout (the repository root on `sys.path`, as
`python -m pytest` and `python -m benchmarks` put it), `gridless/` holds only its own
files: `install()` then maps exactly those three names to the folders beside
`gridless/`. The finder goes first on `sys.meta_path` so it also wins over an editable
install of another checkout of gridless (its finder maps the names to that checkout).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

__all__ = ["SUBPACKAGES", "TopFolderFinder", "install"]

# The subpackages pyproject.toml's `package-dir` maps to top folders of the repository.
SUBPACKAGES = ("common", "worker", "master")


class TopFolderFinder:
    """A meta path finder for `gridless.<name>` kept in a top folder `<root>/<name>/`;
    their own submodules are found the ordinary way, through the package's `__path__`."""

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


def install(package_dir: Path) -> None:
    """Map the subpackages missing from `package_dir` (a checkout's `gridless/`) to the
    top folders beside it; nothing when they are inside it (an installed wheel)."""
    root = package_dir.parent
    folders = {
        f"gridless.{name}": root / name
        for name in SUBPACKAGES
        if not (package_dir / name).is_dir() and (root / name / "__init__.py").is_file()
    }
    if folders and not any(isinstance(f, TopFolderFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, TopFolderFinder(folders))


install(Path(__file__).resolve().parent)
