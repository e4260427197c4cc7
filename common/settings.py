"""Settings of the master, read from `GRIDLESS_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "run_paths"]


class Settings(BaseSettings):
    """Where the master keeps its data and where it listens.

    `database_url` and `store_root` default to `<run_dir>/gridless.db` and
    `<run_dir>/store` when left empty.
    """

    model_config = SettingsConfigDict(env_prefix="GRIDLESS_", extra="ignore")

    run_dir: Path = Path("gridless-runs")
    database_url: str = ""
    store_root: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    token: str | None = None
    heartbeat_interval_s: float = Field(default=5.0, gt=0)

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL, defaulting to the run directory's SQLite file."""
        return self.database_url or f"sqlite:///{run_paths(self.run_dir)[0]}"

    def resolved_store_root(self) -> Path:
        """The checkpoint store's root, defaulting to `<run_dir>/store`."""
        return self.store_root or run_paths(self.run_dir)[1]


def run_paths(run_dir: Path) -> tuple[Path, Path]:
    """The SQLite file and the store folder inside a run directory."""
    run_dir = Path(run_dir).resolve()
    return run_dir / "gridless.db", run_dir / "store"
