"""Schema migrations: a new database, a database from before migrations and one at an
older revision all reach the head revision in place, data kept, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import Engine

from gridless.common.db import (
    Base,
    EpochMetricRow,
    StudyRow,
    make_engine,
    make_session_factory,
    session_scope,
)
from gridless.common.migrate import BASELINE, current_revision, head_revision, upgrade


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'g.db'}"
    else:
        yield request.getfixturevalue("postgres").new_database()


@pytest.fixture
def opened() -> Iterator[list[Engine]]:
    """Engines a test opened, disposed after it (an open PostgreSQL connection warns)."""
    engines: list[Engine] = []
    yield engines
    for engine in engines:
        engine.dispose()


def _insert_study(engine: Engine) -> None:
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO studies (id, name, spec, metric, maximize, seed, state, "
                "next_trial_number, created_at) VALUES (7, 'old-study', '{}', "
                "'val_accuracy', true, 3, 'done', 5, :now)"
            ),
            {"now": dt.datetime(2026, 11, 1, tzinfo=dt.UTC)},
        )
        c.execute(
            text(
                "INSERT INTO stages (id, study_id, index, trials, epochs, space, state, decisions) "
                "VALUES (4, 7, 0, 2, 1, '{}', 'done', '{}')".replace("index", '"index"')
            )
        )
        c.execute(
            text(
                "INSERT INTO trials (id, study_id, stage_id, number, state, attempt, epochs, "
                "last_epoch, resume_epoch, warnings, created_at) "
                "VALUES (9, 7, 4, 0, 'completed', 0, 1, 1, 0, '[]', :now)"
            ),
            {"now": dt.datetime(2026, 11, 1, tzinfo=dt.UTC)},
        )
        c.execute(
            text(
                "INSERT INTO epoch_metrics (trial_id, attempt, epoch, val_accuracy, seconds, "
                "stats, created_at) VALUES (9, 0, 1, 0.75, 0.1, '{}', :now)"
            ),
            {"now": dt.datetime(2026, 11, 1, tzinfo=dt.UTC)},
        )


def _diff(engine: Engine) -> list[Any]:
    with engine.connect() as c:
        return list(compare_metadata(MigrationContext.configure(c), Base.metadata))


def test_a_new_database_is_created_at_head_and_matches_the_models(
    url: str, opened: list[Engine]
) -> None:
    engine = make_engine(url)
    opened.append(engine)
    assert current_revision(engine) == head_revision()
    assert _diff(engine) == []  # a model changed without a migration fails here


def test_a_database_at_an_older_revision_upgrades_in_place_keeping_its_rows(
    url: str, opened: list[Engine]
) -> None:
    engine = create_engine(url)
    opened.append(engine)
    upgrade(engine, BASELINE)
    assert "ix_checkpoints_path" not in {
        i["name"] for i in inspect(engine).get_indexes("checkpoints")
    }
    _insert_study(engine)

    engine = make_engine(url)
    opened.append(engine)
    assert current_revision(engine) == head_revision() != BASELINE
    assert "ix_checkpoints_path" in {i["name"] for i in inspect(engine).get_indexes("checkpoints")}
    with session_scope(make_session_factory(engine)) as s:
        study = s.execute(select(StudyRow)).scalar_one()
        assert (study.id, study.name, study.next_trial_number) == (7, "old-study", 5)
        metric = s.execute(select(EpochMetricRow)).scalar_one()
        # revision 0003 copied the trial's stage into its epoch rows
        assert (metric.trial_id, metric.stage_id, metric.val_accuracy) == (9, 4, 0.75)
    assert _diff(engine) == []


def test_a_database_from_before_migrations_is_stamped_then_upgraded(
    url: str, opened: list[Engine]
) -> None:
    # What gridless 0.1 made: the baseline tables, no alembic_version table.
    engine = create_engine(url)
    opened.append(engine)
    upgrade(engine, BASELINE)
    with engine.begin() as c:
        c.execute(text("DROP TABLE alembic_version"))
    _insert_study(engine)
    assert current_revision(engine) is None

    engine = make_engine(url)
    opened.append(engine)
    assert current_revision(engine) == head_revision()
    with session_scope(make_session_factory(engine)) as s:
        assert s.execute(select(StudyRow.name)).scalar_one() == "old-study"


def test_opening_a_database_at_head_twice_changes_nothing(url: str, opened: list[Engine]) -> None:
    opened.append(make_engine(url))
    engine = make_engine(url)
    opened.append(engine)
    assert current_revision(engine) == head_revision()
    assert _diff(engine) == []
