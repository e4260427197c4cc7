"""Settings come from GRIDLESS_* environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gridless.common.settings import Settings, run_paths


def test_defaults_bind_loopback_with_no_token() -> None:
    settings = Settings()
    assert (settings.host, settings.port, settings.token, settings.database_url) == (
        "127.0.0.1",
        8765,
        None,
        None,
    )


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDLESS_PORT", "9001")
    monkeypatch.setenv("GRIDLESS_TOKEN", "t0k")
    monkeypatch.setenv("GRIDLESS_DATABASE_URL", "postgresql+psycopg://u@127.0.0.1/db")
    monkeypatch.setenv("GRIDLESS_HEARTBEAT_INTERVAL_S", "0.5")
    settings = Settings()
    assert (settings.port, settings.token, settings.heartbeat_interval_s) == (9001, "t0k", 0.5)
    assert settings.database_url == "postgresql+psycopg://u@127.0.0.1/db"


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDLESS_PORT", "70000")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_run_paths(tmp_path: Path) -> None:
    assert run_paths(tmp_path) == (
        tmp_path.resolve() / "gridless.db",
        tmp_path.resolve() / "store",
    )
