"""The issue-17 benchmarks (benchmarks/report_load.py, master_memory.py) at a tiny size
against a real `gridless master` process, so that they keep working."""

from __future__ import annotations

import pytest

from benchmarks.master_memory import master_memory
from benchmarks.report_load import report_throughput
from benchmarks.simulated_workers import CLIENTS, client_ceiling

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("client", CLIENTS)
def test_report_load_stores_each_acknowledged_report_once_with_no_server_error(
    client: str,
) -> None:
    result = report_throughput(
        "sqlite",
        4,
        5,
        resend=0.3,
        dashboard=True,
        history=10,
        floor_requests=20,
        batch=2,
        client=client,
    )
    assert (result["stored"], result["reports"], result["expected"]) == (20, 20, 20)
    assert (result["server_errors"], result["once"]) == (0, True)
    assert set(result["statuses"]) == {"200"}
    # claims, starts, 3 requests of at most 2 epochs, resends, finishes
    assert result["requests"] > 4 * (3 + 3)
    assert result["floor"]["statuses"] == {"200": 20}
    for query in ("trial list", "study detail"):
        assert result["dashboard"][query]["answers"] >= 1
        assert set(result["dashboard"][query]["statuses"]) == {"200"}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("processes", [1, 2])
def test_client_ceiling_acknowledges_every_report(client: str, processes: int) -> None:
    result = client_ceiling(4, 3, processes=processes, client=client)
    assert (result["reports"], result["server_errors"]) == (12, 0)
    assert result["reports_per_s"] > 0


def test_master_memory_counts_the_stored_study() -> None:
    result = master_memory(20, 2, rounds=1)
    assert (result["trials"], result["epoch_rows"]) == (20, 40)
    assert 0 < result["rss_empty_mb"] <= result["peak_mb"]
    assert result["rss_mb"] <= result["peak_mb"]
