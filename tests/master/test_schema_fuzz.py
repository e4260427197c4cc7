"""Property-based requests generated from the master's own OpenAPI schema
(schemathesis): no request, valid or not, may get a server error (5xx), whatever the
database holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from gridless.master.app import create_app
from gridless.master.server import BackgroundServer
from tests.conftest import tiny_spec

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    app = create_app(database_url=f"sqlite:///{root / 'g.db'}", store_root=root / "store")
    with BackgroundServer(app) as server:
        # Something for the ids to find: a study with a claimed, reported trial.
        app.state.service.create_study(tiny_spec())
        api = httpx.Client(base_url=server.url + "/api/v1", timeout=30)
        trial = api.post("/workers/claim", json={"worker_id": "w1"}).json()["assignment"]
        api.post(
            f"/trials/{trial['trial_id']}/start",
            json={"worker_id": "w1", "attempt": 0, "params": {}},
        )
        api.post(
            f"/trials/{trial['trial_id']}/reports",
            json={
                "worker_id": "w1",
                "attempt": 0,
                "epoch": 1,
                "val_accuracy": 0.5,
                "train_loss": 1.0,
            },
        )
        api.close()
        yield schemathesis.openapi.from_url(server.url + "/openapi.json")


def test_no_request_gets_a_server_error(fuzzed: Any) -> None:
    failures: list[str] = []
    operations = 0
    for result in fuzzed.get_all_operations():
        operation = result.ok()
        operations += 1
        # Valid requests and requests that break the schema on purpose, half and half.
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @given(case=strategy)
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            response = case.call(timeout=30)
            if response.status_code >= 500 and response.status_code != 503:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query or ''}: "
                    f"{response.status_code} {response.text[:200]}"
                )

        call()
    assert operations >= 20, "the schema lists every route"
    assert failures == []
