"""The study specification: one YAML file a study, validated eagerly (DESIGN.md)."""

from __future__ import annotations

import difflib
import importlib.util
import math
import typing
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gridless.common.errors import SpecError
from gridless.common.jsonsafe import check_strict_json
from gridless.common.metric import Metric, parse_metric, parse_objectives
from gridless.common.space import (
    Distribution,
    NumericDistribution,
    active_names,
    parse_space,
)

__all__ = [
    "NOTIFY_EVENTS",
    "TARGET_PATTERN",
    "EarlyStoppingSpec",
    "FailureSpec",
    "NarrowingSpec",
    "NotifySpec",
    "RescoreSpec",
    "ResourcesSpec",
    "StageSpec",
    "StopSpec",
    "StudySpec",
    "TrackerSpec",
    "WarmSnapshot",
    "WarmStartSpec",
    "check_configs",
    "load_spec",
    "parse_spec",
    "trial_rng",
]

# A code target, "module:function" (train:, predict:, evaluate:).
TARGET_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"


# `metric:`: a short name, {name, mode}, or a list of them (a multi-objective study).
MetricSpec = str | dict[str, str] | list[str | dict[str, str]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageSpec(_Strict):
    """One stage of the coarse-to-fine search: how many trials, how many epochs each."""

    trials: int = Field(ge=1, le=100_000)
    epochs: int = Field(ge=1, le=10_000)


class EarlyStoppingSpec(_Strict):
    """Stop hopeless trials within a stage (master/early_stopping.py): the median rule
    (`grace_epochs`, `min_trials`), or asynchronous successive halving, ASHA
    (rungs at `min_epochs * reduction_factor**k` epochs, at most `rungs` of them)."""

    rule: Literal["median", "asha", "none"] = "median"
    grace_epochs: int = Field(default=1, ge=0, le=10_000)
    min_trials: int = Field(default=5, ge=1, le=100_000)
    min_epochs: int = Field(default=1, ge=1, le=10_000)
    reduction_factor: float = Field(default=4.0, gt=1.0, le=100.0)
    rungs: int | None = Field(default=None, ge=1, le=100)

    @model_validator(mode="after")
    def _keys_of_its_rule(self) -> EarlyStoppingSpec:
        # Compared with the defaults, not `model_fields_set`: a stored spec carries every
        # key with its default and must validate again.
        fields = type(self).model_fields
        asha, median = ("min_epochs", "reduction_factor", "rungs"), ("grace_epochs", "min_trials")
        other = {"median": asha, "asha": median}.get(self.rule, ())
        for key in other:
            if getattr(self, key) != fields[key].default:
                owner = "asha" if self.rule == "median" else "median"
                raise SpecError(
                    f"early_stopping.{key}: a setting of the {owner} rule, but the rule is "
                    f"{self.rule}"
                )
        return self


class RescoreSpec(_Strict):
    """Re-run the top configurations of a stage on more seeds before it closes, and select
    them by their mean score (master/rescore.py). `seeds` counts the first run:
    `seeds: 3` adds two runs of each of the `top` configurations."""

    top: int = Field(default=3, ge=1, le=100)
    seeds: int = Field(default=3, ge=2, le=100)
    after: Literal["every_stage", "last_stage"] = "every_stage"


class NarrowingSpec(_Strict):
    """How a stage's ranges follow from the previous stage's top trials (README, "Stages
    and narrowing"): `extend` moves a flagged edge by that fraction of the width; a flag
    the scores or the evidence back walks `walk` widths (at least one), and a study may
    add `max_extra_stages` stages while a walk has not arrived; added stages spend the
    plan's epochs (its stages' trials x epochs), plus `extra_epochs` at most. `lr_param`
    names the parameter divergence speaks about (default `learning_rate`, else `lr`)."""

    top_fraction: float = Field(default=0.2, gt=0.0, le=1.0)
    min_top: int = Field(default=3, ge=1, le=10_000)
    margin: float = Field(default=0.25, ge=0.0, le=10.0)
    min_width: float = Field(default=0.1, ge=0.0, le=1.0)
    border: float = Field(default=0.1, ge=0.0, lt=0.5)
    extend: float = Field(default=0.5, ge=0.0, le=10.0)
    walk: float = Field(default=1.0, ge=1.0, le=10.0)
    max_extra_stages: int = Field(default=3, ge=0, le=20)
    extra_epochs: int = Field(default=0, ge=0, le=100_000_000)
    lr_param: str | None = Field(default=None, min_length=1, max_length=64)


class FailureSpec(_Strict):
    """The circuit breaker: a study whose trials keep failing pauses, with the
    reason, instead of burning its budget. Failed means the training code raised;
    diverged trials are evidence about the range and do not count."""

    first: int = Field(default=5, ge=1, le=100_000)  # the first N all failed
    window: int = Field(default=20, ge=1, le=100_000)  # or, of the last N finished...
    max_rate: float = Field(default=0.5, gt=0.0, le=1.0)  # ...at least this share failed


class ResourcesSpec(_Strict):
    """What each trial's worker asks Ray for: CPUs, and GPUs, which may be a
    fraction (0.25: four trials share one GPU) or a whole number above 1."""

    cpu: float = Field(default=1.0, gt=0.0, le=1024.0)
    gpu: float = Field(default=0.0, ge=0.0, le=64.0)

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, gpu: float) -> float:
        if gpu > 1 and not float(gpu).is_integer():
            raise SpecError(
                f"resources.gpu: a trial asks for a fraction of one GPU or a whole number of "
                f"them, but got {gpu!r}"
            )
        return gpu


class StopSpec(_Strict):
    """When a study ends before its stages are done: its metric reached
    `target`, `max_minutes` of wall clock since it was created, `max_trials` trials, or
    `patience_stages` stages in a row without a better best score."""

    target: float | None = Field(default=None, allow_inf_nan=False)
    max_minutes: float | None = Field(default=None, gt=0.0, le=525_600.0)
    max_trials: int | None = Field(default=None, ge=1, le=10_000_000)
    patience_stages: int | None = Field(default=None, ge=1, le=100)


def check_configs(
    space: dict[str, Distribution], configs: list[dict[str, Any]], *, where: str
) -> None:
    """Each configuration gives every searched parameter a value of the right kind (a
    value outside its range is allowed: a known-good point beyond the space), and a
    conditional parameter a value exactly when its condition holds.

    Raises:
        SpecError: naming `where[i].param` and the rule it breaks.
    """
    for i, config in enumerate(configs):
        unknown = sorted(set(config) - set(space))
        if unknown:
            raise SpecError(
                f"{where}[{i}].{unknown[0]}: not a parameter of the space "
                f"({', '.join(sorted(space))})"
            )
        active = active_names(space, config)
        missing = sorted(name for name in active if name not in config)
        if missing:
            raise SpecError(f"{where}[{i}]: gives no value for {', '.join(missing)}")
        for name in config:
            if name not in active:
                held = " and ".join(c.describe() for c in space[name].when)
                raise SpecError(
                    f"{where}[{i}].{name}: applies only when {held}; leave it out of "
                    "this configuration"
                )
        for name, value in config.items():
            dist = space[name]
            if isinstance(dist, NumericDistribution):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise SpecError(f"{where}[{i}].{name}: must be a number, but got {value!r}")
                if not math.isfinite(value):
                    raise SpecError(f"{where}[{i}].{name}: must be finite, but got {value!r}")
                if dist.log and value <= 0:
                    raise SpecError(
                        f"{where}[{i}].{name}: a log-scale parameter must be > 0, but "
                        f"got {value!r}"
                    )
            elif not dist.contains(value):
                raise SpecError(
                    f"{where}[{i}].{name}: {value!r} is not one of the options "
                    f"{dist.to_json()['choice']!r}"
                )


NotifyEvent = Literal["finished", "failed", "border"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = ("finished", "failed", "border")


class NotifySpec(_Strict):
    """Where the master posts a study's events: a Slack-compatible incoming
    webhook (`{"text": ...}` plus structured fields), for the events named in `on`:
    `finished` (the study completed or was stopped), `failed` (a trial's code raised) and
    `border` (a stage closed with a best value on a border of its range)."""

    url: str = Field(max_length=2048)
    on: list[NotifyEvent] = Field(default_factory=lambda: list(NOTIFY_EVENTS), max_length=3)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            parts = urlsplit(url)
            scheme, host, _ = parts.scheme, parts.hostname, parts.port  # a bad port raises
        except ValueError:  # or a malformed IPv6 host
            scheme, host = "", None
        if scheme not in ("http", "https") or not host:
            raise SpecError(
                f"notify.url: must be an http:// or https:// URL with a host, but got "
                f"{url[:100]!r}"
            )
        if any(c.isspace() or not c.isprintable() for c in url):
            raise SpecError("notify.url: must not contain spaces or control characters")
        return url

    @field_validator("on")
    @classmethod
    def _some_events(cls, on: list[str]) -> list[str]:
        if not on:
            raise SpecError(f"notify.on: name at least one of {', '.join(NOTIFY_EVENTS)}")
        if len(set(on)) != len(on):
            raise SpecError(f"notify.on: each event once, but got {on!r}")
        return on


TrackerKind = Literal["mlflow", "tensorboard"]
# The module each tracker writes with, and what to install for it.
TRACKER_LIBRARIES: dict[str, tuple[str, str]] = {
    "mlflow": ("mlflow", "pip install mlflow (or mlflow-skinny)"),
    "tensorboard": ("tensorboardX", "pip install tensorboardX tensorboard"),
}


class TrackerSpec(_Strict):
    """Where the master also logs each trial's params and epoch metrics: one MLflow run a
    trial (`tracking_uri`, default `file:mlruns` in the run directory; `experiment`,
    default the study's name) or one TensorBoard log dir a trial under `log_dir` (default
    `tensorboard` in the run directory). In a spec: `trackers: [mlflow, tensorboard]`, or
    `{mlflow: {tracking_uri: ...}}` for options; master/trackers.py writes them."""

    kind: TrackerKind
    tracking_uri: str | None = Field(default=None, min_length=1, max_length=2048)
    experiment: str | None = Field(default=None, min_length=1, max_length=256)
    log_dir: str | None = Field(default=None, min_length=1, max_length=4096)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, raw: object) -> object:
        """`mlflow` -> {kind: mlflow}; `{mlflow: {options}}` -> {kind: mlflow, options}."""
        if isinstance(raw, str):
            return {"kind": raw}
        if isinstance(raw, dict) and len(raw) == 1 and "kind" not in raw:
            ((kind, options),) = raw.items()
            if options is None or isinstance(options, dict):
                return {"kind": kind, **(options or {})}
        return raw

    @model_validator(mode="after")
    def _options_and_library(self) -> TrackerSpec:
        own = {"mlflow": {"tracking_uri", "experiment"}, "tensorboard": {"log_dir"}}[self.kind]
        for key in ("tracking_uri", "experiment", "log_dir"):
            if getattr(self, key) is not None and key not in own:
                raise SpecError(
                    f"trackers: {key} is an option of {self._other()}, not {self.kind}"
                )
        module, install = TRACKER_LIBRARIES[self.kind]
        if importlib.util.find_spec(module) is None:
            raise SpecError(f"trackers: {self.kind} needs `{install}` where the master runs")
        return self

    def _other(self) -> str:
        return "tensorboard" if self.kind == "mlflow" else "mlflow"


class WarmSnapshot(_Strict):
    """A finished study of another run, as `gridless run`/`submit` read it from that run's
    database for `warm_start: {run: PATH}`: what a warm start needs, copied."""

    model: str = Field(max_length=200)
    metric: str = Field(max_length=64)
    maximize: bool
    ranges: dict[str, Any]
    name: str | None = Field(default=None, max_length=64)  # the old study's, to show
    run: str | None = Field(default=None, max_length=4096)  # the run directory it came from
    trials: list[dict[str, Any]] = Field(default_factory=list, max_length=100_000)


class WarmStartSpec(_Strict):
    """Start from a finished study: its last stage's (narrowed) ranges open
    stage 1 (`ranges: spec` keeps this spec's), and TPE learns from its trials that fall
    inside them. `study: ID` names one of the same database (linked, not copied); `run:
    PATH` another run directory, which the CLI reads into `snapshot` (copied)."""

    study: int | None = Field(default=None, ge=1, le=2**31 - 1)
    run: str | None = Field(default=None, max_length=4096)
    snapshot: WarmSnapshot | None = None
    ranges: Literal["old", "spec"] = "old"

    @model_validator(mode="after")
    def _one_source(self) -> WarmStartSpec:
        given = [k for k in ("study", "run", "snapshot") if getattr(self, k) is not None]
        if given not in (["study"], ["run"], ["snapshot"], ["study", "run"]):
            raise SpecError(
                "warm_start: name the old study: study: ID (this database) or run: PATH "
                "(another run directory, with study: ID in it if it holds several)"
            )
        return self


class StudySpec(_Strict):
    """A whole study: model (or the user's training function), data, metric, search space
    and stages."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: str = "numpy.mlp"
    # The user's own training function, "module:function"; excludes `model`.
    train: str | None = Field(default=None, max_length=200, pattern=TARGET_PATTERN)
    # Ensembles of a function's models: predict(state, params, split) -> outputs
    # and evaluate(outputs, split) -> {name: value}, both "module:function".
    predict: str | None = Field(default=None, max_length=200, pattern=TARGET_PATTERN)
    evaluate: str | None = Field(default=None, max_length=200, pattern=TARGET_PATTERN)
    dataset: str | dict[str, str] = "digits"
    # A short name (val_accuracy, val_loss, val_rmse, val_r2) or {name, mode}.
    metric: MetricSpec = "val_accuracy"
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    space: dict[str, Any]
    fixed: dict[str, float | int | str | bool] = Field(default_factory=dict)
    stages: list[StageSpec] = Field(min_length=1, max_length=20)
    # random (default): workers sample the stage's ranges themselves; tpe: one Optuna TPE
    # model per study on the master, learning across stages (master/sampler_state.py).
    # The model is not the default yet: it missed TPE's regret on HPOLib and
    # NAS-Bench-201 (docs/search-controls.md), and its claims can answer wait.
    sampler: Literal["random", "tpe"] = "random"
    early_stopping: EarlyStoppingSpec = Field(default_factory=EarlyStoppingSpec)
    # Re-score the top of each stage (or of the last) on more seeds; off: None.
    rescore: RescoreSpec | None = None
    # Per-trial limits: a trial attempt past either is stopped and recorded so
    # (worker/limits.py): wall-clock seconds, and resident memory of its process in MiB.
    max_trial_seconds: float | None = Field(default=None, gt=0.0, le=31_536_000.0)
    max_trial_memory_mb: int | None = Field(default=None, ge=16, le=16_777_216)
    narrowing: NarrowingSpec = Field(default_factory=NarrowingSpec)
    failures: FailureSpec = Field(default_factory=FailureSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    stop: StopSpec = Field(default_factory=StopSpec)
    warm_start: WarmStartSpec | None = None
    notify: NotifySpec | None = None
    # MLflow and TensorBoard logging of every trial (master/trackers.py), each kind once.
    trackers: list[TrackerSpec] = Field(default_factory=list, max_length=2)
    # Known-good configurations the first stage runs first, each a value for
    # every searched parameter; a value outside its range is allowed (`outside_range`).
    enqueue: list[dict[str, float | int | str | bool]] = Field(
        default_factory=list, max_length=1000
    )

    @field_validator("train", "predict", "evaluate", mode="before")
    @classmethod
    def _train_target(cls, raw: object, info: ValidationInfo) -> object:
        if isinstance(raw, str) and ":" not in raw:
            example = {"train": "train:main", "predict": "train:predict"}.get(
                str(info.field_name), "train:evaluate"
            )
            module, _, function = example.partition(":")
            raise SpecError(
                f"{info.field_name}: expected module:function (e.g. {info.field_name}: "
                f"{example} for {function}() in {module}.py beside the spec), but got {raw!r}"
            )
        return raw

    @model_validator(mode="after")
    def _ensemble_hooks(self) -> StudySpec:
        hooks = {"predict": self.predict, "evaluate": self.evaluate}
        given = [name for name, value in hooks.items() if value is not None]
        if given and self.train is None:
            raise SpecError(
                f"{given[0]}: only a train: study names ensemble hooks; built-in models "
                "ensemble without them"
            )
        if len(given) == 1:
            missing = "evaluate" if given == ["predict"] else "predict"
            raise SpecError(
                f"{missing}: ensembles of your models need both predict: and evaluate: "
                f"(docs/user-code.md#ensembles), but the spec names only {given[0]}:"
            )
        return self

    @field_validator("metric", mode="before")
    @classmethod
    def _valid_metric(cls, raw: MetricSpec) -> MetricSpec:
        parse_objectives(raw)  # raises SpecError naming the rule
        return raw

    @model_validator(mode="after")
    def _cpu_models_on_cpus(self) -> StudySpec:
        if self.train is None and self.model.startswith("numpy.") and self.resources.gpu > 0:
            raise SpecError(
                f"resources.gpu: model {self.model} is a NumPy model and trains on CPUs "
                "only; ask for no GPU, or use its torch twin"
            )
        return self

    @model_validator(mode="after")
    def _model_or_train(self) -> StudySpec:
        if self.train is not None and "model" in self.model_fields_set:
            raise SpecError(
                "train: a study names either model: (a built-in or a trainer factory) or "
                "train: (your training function), not both"
            )
        return self

    @field_validator("space")
    @classmethod
    def _valid_space(cls, raw: dict[str, Any]) -> dict[str, Any]:
        parse_space(raw)  # raises SpecError with the parameter's name
        # the kind first, `limits:` and `when:` after it, whatever order the YAML had:
        # readers (the dashboard) take the first key as the kind
        extras = ("limits", "when")
        return {
            name: {
                **{k: v for k, v in dist.items() if k not in extras},
                **{k: v for k, v in dist.items() if k in extras},
            }
            for name, dist in raw.items()
        }

    @model_validator(mode="after")
    def _lr_param_is_numeric(self) -> StudySpec:
        name = self.narrowing.lr_param
        if name is not None and not isinstance(
            parse_space(self.space).get(name), NumericDistribution
        ):
            raise SpecError(
                f"narrowing.lr_param: {name!r} must name a numeric parameter of the space "
                f"({', '.join(sorted(self.space))})"
            )
        return self

    @model_validator(mode="after")
    def _enqueued_fit_the_space(self) -> StudySpec:
        space = parse_space(self.space)
        first = self.stages[0].trials if self.stages else 0
        if len(self.enqueue) > first:
            raise SpecError(
                f"enqueue: {len(self.enqueue)} configurations, but the first stage runs "
                f"{first} trials: enqueue at most {first}"
            )
        check_configs(space, self.enqueue, where="enqueue")
        return self

    def stage_one_space(self) -> dict[str, Any]:
        """The ranges stage 1 samples: a snapshot warm start's old ranges (unless `ranges:
        spec`), else the spec's own (a `study: ID` warm start's are the master's to read)."""
        warm = self.warm_start
        if warm is not None and warm.snapshot is not None and warm.ranges == "old":
            return dict(warm.snapshot.ranges)
        return self.space

    def outside_range(self) -> list[str]:
        """The enqueued values that lie outside stage 1's ranges (allowed, worth a
        warning)."""
        space = parse_space(self.stage_one_space())
        return [
            f"enqueue[{i}].{name} = {value!r} lies outside {space[name].to_json()}"
            for i, config in enumerate(self.enqueue)
            for name, value in config.items()
            if not space[name].contains(value)
        ]

    @field_validator("trackers")
    @classmethod
    def _each_tracker_once(cls, trackers: list[TrackerSpec]) -> list[TrackerSpec]:
        kinds = [t.kind for t in trackers]
        if len(set(kinds)) != len(kinds):
            raise SpecError(f"trackers: each tracker once, but got {', '.join(kinds)}")
        return trackers

    @field_validator("fixed")
    @classmethod
    def _finite_fixed(cls, raw: dict[str, Any]) -> dict[str, Any]:
        for key, value in raw.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise SpecError(f"fixed.{key}: must be finite, but got {value!r}")
        return raw

    @property
    def objective(self) -> Metric:
        """The metric the study optimizes, with its direction."""
        return parse_metric(self.metric)

    @property
    def objectives(self) -> tuple[Metric, ...]:
        """Every objective, the primary one first (one for a single-metric study)."""
        return parse_objectives(self.metric)

    @property
    def maximize(self) -> bool:
        """Whether larger values of the metric are better."""
        return self.objective.maximize

    def distributions(self) -> dict[str, Distribution]:
        """The parsed search space of the first stage."""
        return parse_space(self.space)

    def total_trials(self) -> int:
        """Trials over all stages."""
        return sum(stage.trials for stage in self.stages)


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    # a misspelt key also leaves the right one missing: the spelling is the cause
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    where = ".".join(str(part) for part in err["loc"]) or "spec"
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, SpecError):
        return str(ctx_error)
    if err["type"] == "extra_forbidden":
        known = _known_keys(err["loc"][:-1])
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1, cutoff=0.6)
        if not close:
            return f"{where}: unknown key; check its spelling against the documented spec"
        return (
            f"{where}: unknown key; did you mean {close[0]!r}? (the keys here: {', '.join(known)})"
        )
    return f"{where}: {err['msg']}"


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the spec allows at `loc` (a path of field names), or [] where unknown."""
    model: type[BaseModel] = StudySpec
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list of models (stages.0)
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        nested = [
            t
            for t in (field.annotation, *typing.get_args(field.annotation))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if not nested:
            return []
        model = nested[0]
    return sorted(model.model_fields)


def parse_spec(raw: Any) -> StudySpec:
    """Validate a mapping as a study spec.

    Raises:
        SpecError: one line naming the first offending field and the rule it breaks.
    """
    if not isinstance(raw, dict):
        raise SpecError(f"spec: must be a mapping at the top level, but got {type(raw).__name__}")
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_first_error(exc)) from None
    try:  # what the fields' own rules leave: NaN/inf or deep nesting anywhere else
        check_strict_json(raw, "")
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    return spec


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a YAML study spec from `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    return parse_spec(raw)


def trial_rng(study_seed: int, trial_number: int) -> np.random.Generator:
    """The generator a trial samples from: seeded by study seed and trial number only."""
    return np.random.default_rng([study_seed, trial_number])
