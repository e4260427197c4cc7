"""SQLAlchemy 2 models of the master's database and the one session boundary.

The master is the only writer. SQLite (the embedded default) runs in WAL mode;
PostgreSQL works through the same models with a different URL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from gridless.common.errors import StorageError
from gridless.common.metric import Metric, merged_metrics

__all__ = [
    "Base",
    "CheckpointRow",
    "EnsembleJobRow",
    "EnsembleRow",
    "EpochMetricRow",
    "StageRow",
    "StudyRow",
    "TrialRow",
    "WorkerRow",
    "make_engine",
    "make_session_factory",
    "session_scope",
    "utcnow",
]


# 64 bits on PostgreSQL (BIGINT); SQLite's INTEGER already is (migration 0005).
BIG_INTEGER = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    """Timezone-aware now, the master's only clock."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timestamps stored as UTC and read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    """Declarative base of every gridless table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        dt.datetime: UTCDateTime,
    }


class StudyRow(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    spec: Mapped[dict[str, Any]]
    metric: Mapped[str] = mapped_column(String(32))
    maximize: Mapped[bool] = mapped_column(Boolean)
    seed: Mapped[int] = mapped_column(BIG_INTEGER)  # a spec allows any 64-bit seed
    state: Mapped[str] = mapped_column(String(16))
    next_trial_number: Mapped[int] = mapped_column(Integer, default=0)
    # Why the study is paused or stopped, when gridless did it (the circuit breaker).
    state_reason: Mapped[str | None] = mapped_column(Text)
    # The circuit breaker counts trials from this number on (reset when resumed).
    breaker_from: Mapped[int] = mapped_column(Integer, default=0)
    # Why a `stop:` rule ended the study (target reached, budget spent, no progress).
    stop_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]

    @property
    def objective(self) -> Metric:
        """The metric this study optimizes, with its direction."""
        return Metric.of(self.metric, maximize=self.maximize)


class StageRow(Base):
    __tablename__ = "stages"
    __table_args__ = (UniqueConstraint("study_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    index: Mapped[int] = mapped_column(Integer)
    trials: Mapped[int] = mapped_column(Integer)
    epochs: Mapped[int] = mapped_column(Integer)
    space: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))
    decisions: Mapped[dict[str, Any]] = mapped_column(default=dict)


def _best_score_default(context: Any) -> float | None:
    """A row inserted without a selection score (bulk inserts) is ranked by its best."""
    value = context.get_current_parameters().get("best_score")
    return float(value) if value is not None else None


class TrialRow(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("study_id", "number"),
        Index("ix_trials_rank", "study_id", "best_score"),
        Index("ix_trials_selection", "study_id", "selection_score"),
        Index("ix_trials_stage_state", "stage_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    stage_id: Mapped[int] = mapped_column(ForeignKey("stages.id"))
    number: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    epochs: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(64))
    last_epoch: Mapped[int] = mapped_column(Integer, default=0)
    best_score: Mapped[float | None] = mapped_column(Float)
    # What ranks the trial (`ranked`): its best score, or, once its configuration was
    # re-scored on more seeds (master/rescore.py), the mean over those seeds.
    selection_score: Mapped[float | None] = mapped_column(Float, default=_best_score_default)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # The trial this one continues (a person resumed its checkpoint into this one) or
    # re-runs on another seed (origin "rescore").
    parent_id: Mapped[int | None] = mapped_column(Integer)
    resume_path: Mapped[str | None] = mapped_column(String(512))
    resume_epoch: Mapped[int] = mapped_column(Integer, default=0)
    # Where the parameters came from: "enqueued" (the spec's `enqueue:`), "rescore" (a
    # top configuration re-run on another seed), None: the search.
    origin: Mapped[str | None] = mapped_column(String(16))
    # Every metric reported at the best epoch (the latest epoch while none scored).
    best_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Babysitting findings, first occurrence of each code: [{"code", "message", "epoch"}].
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    heartbeat_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


@event.listens_for(TrialRow.best_score, "set", active_history=True)
def _selection_follows_best(target: TrialRow, value: Any, old: Any, _initiator: Any) -> None:
    # A trial is ranked by its best score until re-scoring sets its mean over seeds.
    if target.selection_score is None or target.selection_score == old:
        target.selection_score = value


class EpochMetricRow(Base):
    __tablename__ = "epoch_metrics"
    __table_args__ = (
        UniqueConstraint("trial_id", "epoch"),
        # The median rule reads one epoch's scores of a stage on every report.
        Index("ix_epoch_metrics_stage_epoch", "stage_id", "epoch"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"), index=False)
    # The trial's stage, copied so that one stage's scores at one epoch are one index
    # range, whatever the number of trials (NULL only in rows made before revision 0003).
    stage_id: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float | None] = mapped_column(Float)
    train_accuracy: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    # Every number the trial reported for this epoch, by name (NULL before 0004,
    # whose rows hold only the four columns above), and the study's objective among them.
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    score: Mapped[float | None] = mapped_column(Float)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def named_metrics(self) -> dict[str, float | None]:
        """Every metric of this epoch by name, also for rows written before revision 0004."""
        return merged_metrics(self, self.metrics)


class WorkerRow(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # idle | busy | lost | dead | killed
    trial_id: Mapped[int | None] = mapped_column(Integer)
    trials_run: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[dt.datetime | None]


class CheckpointRow(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (
        UniqueConstraint("trial_id", "epoch"),
        Index("ix_checkpoints_path", "path"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    path: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BIG_INTEGER)  # checkpoints of 2 GiB and more
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Retention (keep the best and the latest of a trial) deletes the others and says so.
    deleted_at: Mapped[dt.datetime | None]
    deleted_why: Mapped[str | None] = mapped_column(String(200))


class EnsembleRow(Base):
    """A built ensemble report of a study (worker/ensembles.py), newest last."""

    __tablename__ = "ensembles"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    report: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EnsembleJobRow(Base):
    """A request to build a study's ensembles, run as a job on a worker.

    `state` is a `JobState`; a done job names the report it saved (`ensemble_id`), a failed
    one says why (`error`); `host` and `pid` say where it ran.
    """

    __tablename__ = "ensemble_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]]  # the request: k, retrain, predict, evaluate
    error: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    ensemble_id: Mapped[int | None] = mapped_column(ForeignKey("ensembles.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy, not the sqlite3 module, begins transactions (see _sqlite_begin): so a
    # SAVEPOINT is nested in a transaction, as the master's writer needs.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode across app crashes
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for `url`, its schema migrated to the newest revision (common/migrate.py);
    SQLite gets WAL and a busy timeout."""
    from gridless.common.migrate import (
        upgrade,  # alembic's import costs ~0.1 s; only masters need it
    )

    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    try:
        upgrade(engine)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot open the database: {exc.__class__.__name__}") from exc
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (rows are read after writing)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error; DB errors become StorageError."""
    session = factory()
    try:
        yield session
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise StorageError(f"database error: {exc.__class__.__name__}") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
