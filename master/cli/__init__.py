"""The `gridless` command line: one typer app over modules by audience.

- `checks`: `check`, and the spec checks every command that starts a study makes first;
- `local`: `run` and `resume`, a study on this machine's (or a joined) Ray, its master
  served in-process and then driven over HTTP like any other;
- `serve`: `master`, a run directory served to workers and clients;
- `remote`: the commands to a running master (`submit`, `status`, `logs`, `workers`,
  `checkpoints`, `ensemble`);
- `edits`: `extend` and `space`, a study changed as it lives on;
- `follow`: the one road from a running study to its result (progress bar, ranked table,
  flags, failures) that `run`, `resume`, `submit`, `extend` and `status` share;
- `render`: the tables and summaries they print, from the API's own models;
- `client`: the typed client of a master's REST API (`ApiClient`, `ApiError`).
"""

from __future__ import annotations

import logging
import sys

import typer

from gridless.common.errors import GridlessError
from gridless.master.cli import checks, edits, local, remote, serve
from gridless.master.cli.render import err

__all__ = ["app", "main"]


def _one_line(doc: str | None) -> str | None:
    """A docstring's first paragraph as one line (None for none)."""
    if not doc:
        return None
    return " ".join(doc.strip().split("\n\n")[0].split())


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Coarse-to-fine random hyperparameter search on Ray (CS231n's worker/master).",
)
# In the order `gridless --help` lists them: the commands of this machine, then a master's.
for command in (
    checks.check,
    local.run,
    local.resume,
    serve.master,
    remote.ensemble,
    remote.status,
    remote.logs,
    remote.submit,
    edits.extend,
    edits.space,
):
    # The command list shows a docstring's first paragraph with its source line breaks;
    # given as one line, it wraps at the terminal's width instead of mid-sentence.
    app.command(short_help=_one_line(command.__doc__))(command)
app.add_typer(remote.workers_app, name="workers")
app.add_typer(remote.checkpoints_app, name="checkpoints")


def main() -> None:
    """Entry point of the `gridless` console script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except GridlessError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
