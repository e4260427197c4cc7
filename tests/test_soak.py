"""The soak script (benchmarks/soak.py) at a small size, so it keeps working."""

from __future__ import annotations

from pathlib import Path

from benchmarks.soak import soak


def test_small_soak_stores_every_report_once_with_no_server_error(tmp_path: Path) -> None:
    result = soak(f"sqlite:///{tmp_path / 'gridless.db'}", tmp_path, reporters=6, epochs=8)
    assert (result["stored"], result["expected"], result["server_errors"]) == (48, 48, 0)
    assert result["requests"] > 6 * (8 + 3)  # claims, starts, reports, repeats, finishes
    assert set(result["statuses"]) == {200}
