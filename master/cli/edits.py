"""The commands that change a study as it lives on: `extend` adds stages,
`space` sets the next stage's ranges."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from gridless.master.cli.client import ApiClient, TokenOption, UrlOption
from gridless.master.cli.follow import (
    ColumnsOption,
    TopOption,
    follow_to_result,
    no_worker_hint,
)
from gridless.master.cli.remote import LaunchOption, WatchOption
from gridless.master.cli.render import console, fail, parse_columns, show, stages_table

__all__ = ["extend", "space"]


def _stage(text: str) -> dict[str, int]:
    """`trials=10,epochs=40` as a stage."""
    stage: dict[str, int] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key.strip() not in ("trials", "epochs") or not value.strip().isdigit():
            raise fail(f"--stage {text!r}: expected trials=N,epochs=M (e.g. trials=10,epochs=40)")
        stage[key.strip()] = int(value)
    if set(stage) != {"trials", "epochs"}:
        raise fail(f"--stage {text!r}: give both trials=N and epochs=M")
    return stage


def extend(
    study_id: Annotated[int, typer.Argument(help="study id")],
    stage: Annotated[
        list[str] | None,
        typer.Option("--stage", "-s", help="a stage to add, trials=N,epochs=M (repeatable)"),
    ] = None,
    trials: Annotated[
        int,
        typer.Option("--trials", min=0, max=100_000, help="trials to add to the running stage"),
    ] = 0,
    workers: LaunchOption = 0,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
    watch: WatchOption = True,
    top: TopOption = 10,
    columns: ColumnsOption = None,
) -> None:
    """Add stages to a study: a completed one runs again, its first new stage narrowed from
    its last finished stage (border flags included)."""
    added = [_stage(text) for text in stage or []]
    if not added and not trials:
        raise fail("give --stage trials=N,epochs=M (repeatable) or --trials N")
    with ApiClient(url, token) as client:
        detail = client.add_stages(study_id, added, add_trials=trials)
        show(stages_table(detail, f"study {study_id} ({detail.name}): {detail.state}"))
        if workers:
            started = client.launch_workers(workers).started
            console.print("started workers " + ", ".join(started))
        elif (hint := no_worker_hint(client, url)) is not None:
            console.print(hint, highlight=False)
        if not watch:
            console.print(f"follow it with: gridless status {study_id} --watch")
            return
        follow_to_result(client, study_id, top=top, columns=parse_columns(columns))


def space(
    study_id: Annotated[int, typer.Argument(help="study id")],
    space_file: Annotated[
        Path, typer.Argument(metavar="SPACE", help="YAML: a space mapping, or a spec with one")
    ],
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
) -> None:
    """Set the next stage's ranges (validated like a spec): the running stage's while it
    has no trial, else the next stage's instead of its narrowing."""
    try:
        raw: Any = yaml.safe_load(space_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"{space_file}: cannot read a YAML space ({exc.__class__.__name__})") from None
    if isinstance(raw, dict) and isinstance(raw.get("space"), dict):
        raw = raw["space"]
    if not isinstance(raw, dict):
        raise fail(f"{space_file}: expected a mapping of parameters to distributions")
    with ApiClient(url, token) as client:
        detail = client.edit_space(study_id, raw)
    show(stages_table(detail, f"study {study_id} ({detail.name}): {detail.state}"))
    if "next_space" in detail.spec:
        console.print("the next stage opens with these ranges instead of its narrowing")
