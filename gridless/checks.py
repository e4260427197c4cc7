"""The seed's checks before a study, for your own Torch code.

    import gridless.checks

    report = gridless.checks.gradcheck(model, x[:3], y[:3], loss_fn=F.cross_entropy)
    assert report.passed, report.failures()
    gridless.checks.sanity(model, F.cross_entropy, (x[:20], y[:20]), num_classes=10)

Called inside your training function while `gridless check SPEC` runs it (when
`trial.subset` is True), their results are part of what it prints.
"""

from __future__ import annotations

from gridless.worker.diagnostics.user_checks import gradcheck, sanity

__all__ = ["gradcheck", "sanity"]
