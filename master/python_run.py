"""`gridless.run`: a study on this machine from Python, as `gridless run` does it, with
the CLI's own machinery (master/cli/local.py and checks.py): the same spec checks, run
directory (`gridless resume` continues it), in-process master and local Ray; the
`Study` it returns (master/python_api.py) reads it over HTTP. Nothing here installs a
signal handler or exits: errors are `GridlessError`s, and the master serves from a daemon
thread until `Study.close()` (or the interpreter's exit)."""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from gridless.common.errors import GridlessError
from gridless.common.settings import run_paths
from gridless.common.spec import StudySpec, parse_spec
from gridless.master.cli.checks import (
    import_paths,
    print_preflight,
    run_preflight,
    validate,
    wire_spec,
)
from gridless.master.cli.client import ApiClient
from gridless.master.cli.local import RUN_RECORD, fit_workers, prepared_store, start_ray
from gridless.master.python_api import LocalRun, Study

__all__ = ["run"]


def _spec_file(spec: str | Path | dict[str, Any] | StudySpec, folder: Path) -> Path:
    """A path to the spec's YAML: a path as it is, a dict or parsed spec written into
    `folder` (its relative `warm_start.run` made absolute against the working directory)."""
    if isinstance(spec, str | Path):
        path = Path(spec)
        if not path.is_file():
            raise GridlessError(f"{path}: no such spec file")
        return path
    raw = spec.model_dump(mode="json", exclude_unset=True) if isinstance(spec, StudySpec) else spec
    if not isinstance(raw, dict):
        raise GridlessError(f"spec: a dict, a StudySpec or a YAML path, not {type(raw).__name__}")
    raw = json.loads(json.dumps(raw))  # a copy, and JSON's types only
    warm = raw.get("warm_start")
    if isinstance(warm, dict) and isinstance(warm.get("run"), str):
        warm["run"] = str(Path(warm["run"]).resolve())
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _code_roots(spec: StudySpec) -> list[str]:
    """The folders the spec's code was imported from in this process (`validate` imports
    it), for the workers' import path: a notebook's `sys.path` entries reach Ray too."""
    roots = []
    for target in (spec.train, spec.predict, spec.evaluate, spec.model):
        if not target or ":" not in target:
            continue
        name = target.partition(":")[0]
        file = getattr(sys.modules.get(name), "__file__", None)
        if file is None:
            continue
        path = Path(file).resolve()
        depth = name.count(".") + (1 if path.name == "__init__.py" else 0)
        roots.append(str(path.parents[depth]))
    return roots


def run(
    spec: str | Path | dict[str, Any] | StudySpec,
    *,
    workers: int | None = None,
    run_dir: str | Path = "gridless-runs",
    store: str | None = None,
    ray_address: str | None = None,
    ray_cpus: int | None = None,
    ray_gpus: int | None = None,
    wait: bool = True,
    progress: bool = False,
    preflight: bool = True,
) -> Study:
    """Run a study on this machine as `gridless run SPEC` does: check the spec, make a run
    directory under `run_dir`, serve its master in this process, start Ray workers.

    Args:
        spec: a YAML file's path, the spec as a dict, or a parsed `StudySpec`. A dict's
            `train: "module:function"` is imported from the working directory.
        workers: how many workers; None fills the free resources.
        ray_address: join this Ray cluster instead of starting a local Ray (a Ray this
            process already started is used as it is, and left running).
        wait: return once the study is over (its workers stopped); False returns at once
            (call `Study.wait()`).
        progress: draw the CLI's progress bar while waiting.
        preflight: run the gradient and sanity checks of a built-in model first.

    Returns:
        The study, its master serving until `Study.close()`.

    Raises:
        GridlessError: the spec is invalid, the preflight failed, or no worker fits.
    """
    if workers is not None and not 1 <= workers <= 256:
        raise GridlessError(f"workers: None or a number from 1 to 256, but got {workers!r}")
    with tempfile.TemporaryDirectory(prefix="gridless-spec-") as scratch:
        spec_path = _spec_file(spec, Path(scratch))
        checked = validate(spec_path)
        wire = wire_spec(spec_path, checked)
        parse_spec(wire)
        text = spec_path.read_text(encoding="utf-8")
        paths = import_paths(spec_path) if isinstance(spec, str | Path) else [str(Path.cwd())]
        paths = list(dict.fromkeys(paths + _code_roots(checked)))
    if checked.train is None and preflight:
        report = run_preflight(checked)
        if not report.passed:
            print_preflight(report)
            raise GridlessError(
                "preflight checks failed (above; preflight=False starts the study anyway)"
            )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = (Path(run_dir) / f"{checked.name}-{stamp}").resolve()
    target.mkdir(parents=True, exist_ok=False)
    store_root = prepared_store(store or run_paths(target)[1])
    (target / "spec.yaml").write_text(text, encoding="utf-8")
    spec_record = spec_path if isinstance(spec, str | Path) else target / "spec.yaml"
    record = {
        "spec": str(spec_record.resolve()),
        "import_paths": paths,
        "store": str(store_root),
    }
    (target / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    try:
        study = _start(
            target, record, wire, workers=workers, ray=(ray_address, ray_cpus, ray_gpus)
        )
    except BaseException:
        if not (target / "gridless.db").is_file():
            shutil.rmtree(target, ignore_errors=True)
        raise
    if wait:
        study.wait(progress=progress)
    return study


def _start(
    target: Path,
    record: dict[str, Any],
    wire: dict[str, Any],
    *,
    workers: int | None,
    ray: tuple[str | None, int | None, int | None],
) -> Study:
    """The master of `target` served in a thread, the study created over HTTP, Ray
    started (or joined) and the workers launched, as `gridless run` does."""
    import ray as ray_api

    from gridless.common.db import make_engine
    from gridless.master.app import create_app
    from gridless.master.launcher import RayLauncher
    from gridless.master.server import BackgroundServer

    url = f"sqlite:///{run_paths(target)[0]}"
    where: dict[str, str] = {}
    app_ = create_app(
        database_url=url,
        store_root=record["store"],
        engine=make_engine(url),
        launcher_factory=lambda: RayLauncher(
            where["url"], str(record["store"]), python_path=record["import_paths"]
        ),
    )
    logging.getLogger("ray").setLevel(logging.ERROR)  # Ray's start-up notices, as the CLI
    server = BackgroundServer(app_).start()
    where["url"] = server.url
    own_ray = not ray_api.is_initialized()
    local = LocalRun(target, server, app_.state.workers, own_ray)
    local._exit_hook = local.close
    atexit.register(local.close)
    client = ApiClient(server.url)
    try:
        study_id = client.create_study(wire).id
        cpu, gpu = app_.state.protocol.active_resources()
        if own_ray:
            start_ray(ray_api, cpu, workers, ray)
        client.launch_workers(fit_workers(app_.state.workers, workers, cpu, gpu))
        return Study(client, study_id, url=server.url, local=local)
    except BaseException:
        client.close()
        local.close()
        raise
