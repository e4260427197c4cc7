"""Settings of the master from `GRIDLESS_*` environment variables; command-line options
override them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "run_paths"]


class Settings(BaseSettings):
    """GRIDLESS_HOST, GRIDLESS_PORT, GRIDLESS_TOKEN, GRIDLESS_DATABASE_URL,
    GRIDLESS_STORE (GRIDLESS_STORE_OPTIONS: its fsspec options as JSON), GRIDLESS_RAY_ADDRESS,
    GRIDLESS_HEARTBEAT_INTERVAL_S, GRIDLESS_ALLOWED_HOSTS."""

    model_config = SettingsConfigDict(env_prefix="GRIDLESS_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    token: str | None = None
    database_url: str | None = None  # default: <run_dir>/gridless.db (SQLite)
    # a folder (local or a shared mount) or an fsspec URL (s3://bucket/prefix)
    store: str | None = None  # default: <run_dir>/store
    ray_address: str | None = None  # default: a local Ray
    heartbeat_interval_s: float = Field(default=5.0, ge=0.1, le=600)
    # Host names the master answers to besides loopback names, IP literals, the bind host
    # and the advertised URL's host (comma-separated); others get 421 (DNS rebinding).
    allowed_hosts: str = ""


def run_paths(run_dir: Path) -> tuple[Path, Path]:
    """The SQLite file and the store folder inside a run directory."""
    run_dir = Path(run_dir).resolve()
    return run_dir / "gridless.db", run_dir / "store"
