"""mypy over the modules of the wheel, each under its installed name.

pyproject.toml's package-dir installs the top folders common/, worker/ and master/ as
gridless.common, gridless.worker and gridless.master; mypy names a file by its folders
(common/spec.py would be `common.spec`) and cannot follow an import hook, so this hands
it every module with its installed name. Messages name the files as they are in the
repository (common/spec.py:12: error: ...). The options are [tool.mypy]'s (strict);
arguments are passed on to mypy: `python scripts/typecheck.py --no-incremental`.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource
from mypy.util import FancyFormatter, count_stats

ROOT = Path(__file__).resolve().parents[1]


def installed_modules(root: Path) -> dict[str, Path]:
    """{installed module name: source file} of every module of the packages that
    pyproject.toml lists, found through its package-dir."""
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    package_dir: dict[str, str] = setuptools["package-dir"]
    modules: dict[str, Path] = {}
    for package in setuptools["packages"]:
        top = max((p for p in package_dir if package == p or package.startswith(p + ".")), key=len)
        folder = root / package_dir[top] / Path(*package[len(top) :].split(".")[1:])
        for path in sorted(folder.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def main(args: list[str]) -> int:
    modules = installed_modules(ROOT)
    files = [str(path.relative_to(ROOT)) for path in modules.values()]
    _, options = process_options([*args, *files])
    sources = [
        BuildSource(str(path.relative_to(ROOT)), name, base_dir=str(ROOT))
        for name, path in modules.items()
    ]
    formatter = FancyFormatter(sys.stdout, sys.stderr, options.hide_error_codes)
    color = options.color_output and formatter.dummy_term is False
    try:
        messages = build.build(sources, options).errors
        blocked = False
    except CompileError as error:
        messages, blocked = error.messages, True
    for message in messages:
        sys.stdout.write((formatter.colorize(message) if color else message) + "\n")
    n_errors, _, n_files = count_stats(messages)
    if n_errors:
        sys.stdout.write(formatter.format_error(n_errors, n_files, len(sources), blockers=blocked))
        sys.stdout.write("\n")
        return 2 if blocked else 1
    sys.stdout.write(formatter.format_success(len(sources), color) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
