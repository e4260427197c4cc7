"""`gridless check` for a `train:` function: a smoke run that says what it ran.

The function is called once in this process with a plain `Trial` (parameters at the
center of the space, 2 epochs, `trial.subset` True), and the report lists each check
with pass, fail or skipped and why: it imports; it runs; it reports the study's metric;
a loss goes down; and whatever `gridless.checks.gradcheck` / `sanity` calls the function
made. Nothing is claimed that did not run.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Mapping
from contextlib import redirect_stderr
from dataclasses import dataclass, field
from typing import Any

from gridless.worker.diagnostics.gradcheck import GradcheckReport
from gridless.worker.diagnostics.preflight import center_params
from gridless.worker.diagnostics.sanity import SanityResult
from gridless.worker.function_runner import failure_text, load_train_function, report_returned
from gridless.worker.trial import Trial, TrialStopped

__all__ = ["SmokeReport", "smoke_check"]

SMOKE_EPOCHS = 2


@dataclass
class SmokeReport:
    """The checks of one smoke run: (name, "pass" | "FAIL" | "skipped", detail)."""

    train: str
    params: dict[str, Any]
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    gradchecks: list[GradcheckReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(status != "FAIL" for _, status, _ in self.rows) and all(
            g.passed for g in self.gradchecks
        )


def _sanity_rows(results: list[SanityResult]) -> list[tuple[str, str, str]]:
    return [(r.name, "pass" if r.passed else "FAIL", r.detail) for r in results]


def smoke_check(
    train: str, space: Mapping[str, Any], fixed: Mapping[str, Any], metric: str
) -> SmokeReport:
    """Run `train` once on a tiny subset and judge what it did."""
    from gridless.worker.diagnostics.user_checks import recording

    params = center_params(space, fixed)
    report = SmokeReport(train, params)
    try:
        function = load_train_function(train)
    except ValueError as exc:
        report.rows.append(("imports", "FAIL", str(exc)))
        return report
    report.rows.append(("imports", "pass", f"{train} is callable"))
    trial = Trial(params, max_epochs=SMOKE_EPOCHS, metric=metric, subset=True)
    start = time.perf_counter()
    printed = io.StringIO()
    with recording() as record, redirect_stderr(printed):
        try:
            result = function(trial)
            report_returned(trial, result, metric)
            error = None
        except TrialStopped as stop:
            error = None if stop.state == "stopped" else stop.reason
        except Exception as exc:  # the user's code: report it, do not crash the CLI
            error = failure_text(exc)
    report.seconds = time.perf_counter() - start
    epochs = len(trial.reported)
    where = "a tiny subset (trial.subset)" if trial.subset_read else "ALL its data"
    if error is not None:
        report.rows.append(("smoke run", "FAIL", error))
    else:
        report.rows.append(
            ("smoke run", "pass", f"{epochs} epoch(s) on {where} in {report.seconds:.1f} s")
        )
    if not trial.subset_read:
        report.rows.append(
            (
                "tiny subset",
                "skipped",
                "the function does not read trial.subset, so it trained on all its data; "
                "read it to keep this check to seconds",
            )
        )
    reported = {k for m in trial.reported.values() for k in m}
    if any(metric in m and math.isfinite(m[metric]) for m in trial.reported.values()):
        report.rows.append(("reports the metric", "pass", f"{metric} in every report"))
    else:
        shown = ", ".join(sorted(reported)) or "nothing"
        report.rows.append(("reports the metric", "FAIL", f"no {metric!r}; it reported {shown}"))
    losses = sorted(k for k in reported if "loss" in k)
    if epochs >= 2 and losses:
        name = losses[0]
        first, last = trial.reported[1].get(name), trial.reported[max(trial.reported)].get(name)
        if first is None or last is None or not (math.isfinite(first) and math.isfinite(last)):
            report.rows.append(("loss decreases", "FAIL", f"{name} is not finite"))
        else:
            status = "pass" if last < first else "FAIL"
            detail = f"{name} {first:.4g} -> {last:.4g} over {epochs} epochs"
            report.rows.append(("loss decreases", status, detail))
    else:
        report.rows.append(
            ("loss decreases", "skipped", "needs a metric named *loss* in 2 epochs")
        )
    report.gradchecks = record.gradchecks
    for grads in record.gradchecks:
        worst = max(grads.rows, key=lambda r: r.error, default=None)
        if worst is None:
            continue
        wrong = ", ".join(r.name for r in grads.failures())
        detail = f"worst {worst.name}: relative error {worst.error:.1e} ({worst.verdict}); " + (
            f"wrong: {wrong}" if wrong else f"all within {grads.threshold:.0e}"
        )
        report.rows.append(("gradient check", "FAIL" if wrong else "pass", detail))
    if not record.gradchecks:
        report.rows.append(
            (
                "gradient check",
                "skipped",
                "the function calls no gridless.checks.gradcheck(model, inputs) under "
                "trial.subset (docs/user-code.md#checks)",
            )
        )
    if record.sanity:
        report.rows.extend(_sanity_rows(record.sanity))
    else:
        report.rows.append(
            (
                "sanity checks",
                "skipped",
                "the function calls no gridless.checks.sanity(model, loss_fn, batch)",
            )
        )
    return report
