"""A multi-objective study's result in the terminal: its Pareto front as the ranked table
(sorted by the first objective, every objective a column), and a line saying so."""

from __future__ import annotations

from rich.table import Table

from gridless.master.cli.client import ApiClient
from gridless.master.cli.render import trials_table
from gridless.master.schemas import ParetoPublic, StudyDetailPublic, TrialsPublic

__all__ = ["front_line", "front_table", "is_multi_objective"]


def is_multi_objective(study: StudyDetailPublic) -> bool:
    """Whether the study names a list of metrics."""
    return len(study.objectives) > 1


def front_table(
    client: ApiClient, study: StudyDetailPublic, columns: list[str]
) -> tuple[Table, ParetoPublic]:
    """The front as the result table: its trials, best first by the first objective, the
    other objectives as columns (their values at each trial's best epoch)."""
    front = client.pareto(study.id)
    others = [o.name for o in front.objectives[1:]]
    page = TrialsPublic(data=list(front.data), count=front.count)
    title = (
        f"{study.name}: Pareto front, {front.count} trial{'s' if front.count != 1 else ''} "
        f"sorted by {study.metric}"
    )
    return trials_table(study, page, [*others, *columns], title=title), front


def front_line(front: ParetoPublic, *, finished: int) -> str:
    """What the table is: how many objectives, and that early stopping stayed off."""
    names = ", ".join(f"{o.name} ({o.mode})" for o in front.objectives)
    return (
        f"a {len(front.objectives)}-objective study ({names}): the table is its Pareto front, "
        f"the {front.count} of {finished} finished trials that no other trial beats on every "
        "objective; no trial was stopped early (early stopping is off for several objectives)"
    )
