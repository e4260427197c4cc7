"""The study page in headless Chromium for a conditional space (a parameter that exists
only for one option of a choice gets its axis, and the trials without it pass through the
axis's "absent" slot, never a point on its scale; the trial table leaves it blank) and for
a 2-objective study (the Pareto panel: every finished trial a dot, the front highlighted,
exactly the API's front)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from gridless.common.spec import parse_spec
from tests.browser.test_dashboard import (  # the browser fixtures, shared
    MIN_PAINTED,
    PAINTED,
    browser,
    console_errors,
    downloads,
    open_page,
)
from tests.browser.test_study_page import column, wait_for, wait_for_table
from tests.conftest import Master, run_with_ray

pytestmark = [pytest.mark.browser, pytest.mark.ray]

__all__ = ["browser", "downloads"]  # fixtures this module uses, imported above

CONDITIONAL_FUNCTION = """
def main(trial):
    p = trial.params
    score = p["momentum"] if p["optimizer"] == "sgd" else 0.5 - p["lr"]
    trial.report(1, val_score=score)
"""

CONDITIONAL = {
    "name": "conditional-page",
    "train": "conditional_page_fn:main",
    "metric": {"name": "val_score", "mode": "max"},
    "seed": 4,
    "space": {
        "lr": {"log_uniform": [1e-4, 1e-1]},
        "optimizer": {"choice": ["sgd", "adam"]},
        "momentum": {"uniform": [0.5, 0.99], "when": {"optimizer": "sgd"}},
    },
    "stages": [{"trials": 12, "epochs": 1}],
    "early_stopping": {"rule": "none"},
    "narrowing": {"max_extra_stages": 0},  # one stage, whatever its flags say
}


TWO_OBJECTIVE_FUNCTION = """
def main(trial):
    width, depth = trial.params["width"], trial.params["depth"]
    trial.report(1, val_f1=width, latency_ms=5 + 50 * width + 10 * depth)
"""

TWO_OBJECTIVE = {
    "name": "two-objective-page",
    "train": "two_objective_page_fn:main",
    "metric": [{"name": "val_f1", "mode": "max"}, {"name": "latency_ms", "mode": "min"}],
    "seed": 8,
    "space": {"width": {"uniform": [0.05, 1.0]}, "depth": {"int": [1, 4]}},
    "stages": [{"trials": 12, "epochs": 1}],
    "narrowing": {"max_extra_stages": 0},
}


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory, ray_session: object) -> Iterator[Master]:
    """Study 1: a user function over a conditional space; study 2: a user function with
    two objectives; both run by real Ray workers."""
    folder = tmp_path_factory.mktemp("conditional-page-user")
    (folder / "conditional_page_fn.py").write_text(CONDITIONAL_FUNCTION)
    (folder / "two_objective_page_fn.py").write_text(TWO_OBJECTIVE_FUNCTION)
    master = Master(tmp_path_factory.mktemp("conditional-page") / "run")
    master.server.start()
    run_with_ray(master, parse_spec(CONDITIONAL), workers=2, python_path=[str(folder)])
    run_with_ray(master, parse_spec(TWO_OBJECTIVE), workers=2, python_path=[str(folder)])
    yield master
    master.server.stop()


def api(master: Master, path: str) -> Any:
    answer = httpx.get(f"{master.url}/api/v1{path}", timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_conditional_axis_draws_absent_values_in_their_own_slot(
    studies: Master, browser: WebDriver
) -> None:
    points = api(studies, "/studies/1/points")
    adam = sum(v == "adam" for v in points["values"]["optimizer"])
    assert 0 < adam < points["count"] == 12  # both branches ran
    browser.get_log("browser")
    open_page(browser, f"{studies.url}/ui/#/studies/1")
    assert console_errors(browser) == []
    box = browser.find_element(By.ID, "parallel")
    axes = box.find_elements(By.CSS_SELECTOR, "g.axis")
    assert [a.get_attribute("data-param") for a in axes] == [
        "lr",
        "optimizer",
        "momentum",
        "val_score",
    ]
    # every trial is a line, the adam ones too: their momentum is absent, not missing data
    assert int(box.get_attribute("data-lines")) == 12
    assert json.loads(box.get_attribute("data-absent")) == {"momentum": adam}
    momentum = box.find_element(By.CSS_SELECTOR, "g.axis[data-param='momentum']")
    labels = [t.text for t in momentum.find_elements(By.CSS_SELECTOR, ".absent-label")]
    assert labels == [f"absent ({adam})", "when optimizer is sgd"]
    # the slot sits below the axis: no absent trial is drawn as a value on the scale
    line = momentum.find_element(By.CSS_SELECTOR, ".axis-line")
    slot = momentum.find_element(By.CSS_SELECTOR, ".absent-slot")
    assert float(slot.get_attribute("cy")) > float(line.get_attribute("y2"))
    # the unconditional axes have no absent slot
    assert box.find_elements(By.CSS_SELECTOR, "g.axis[data-param='lr'] .absent-slot") == []
    assert dict(browser.execute_script(PAINTED))["parallel coordinates"] > MIN_PAINTED
    assert console_errors(browser) == []


def test_the_trial_table_leaves_an_absent_value_blank(studies: Master, browser: WebDriver) -> None:
    open_page(browser, f"{studies.url}/ui/#/studies/1")
    wait_for_table(browser, "limit=")
    optimizers = column(browser, "params.optimizer")
    momenta = column(browser, "params.momentum")
    cells = browser.find_elements(By.CSS_SELECTOR, "#trials tbody td[data-col='params.momentum']")
    assert len(optimizers) == len(momenta) == 12
    for optimizer, value, cell in zip(optimizers, momenta, cells, strict=True):
        if optimizer == "adam":
            assert (value, cell.text) == ("", "")
        else:
            assert 0.5 <= float(value) <= 0.99
            assert cell.text != ""


def test_the_pareto_panel_highlights_the_api_front(studies: Master, browser: WebDriver) -> None:
    front = api(studies, "/studies/2/pareto")
    assert 1 <= front["count"] < 12
    assert len(front["compared"]["number"]) == 12
    browser.get_log("browser")
    open_page(browser, f"{studies.url}/ui/#/studies/2")
    panel = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#pareto[data-front]"), "the Pareto panel"
    )[0]
    assert console_errors(browser) == []
    assert int(panel.get_attribute("data-front")) == front["count"]
    assert int(panel.get_attribute("data-points")) == 12
    dots = panel.find_elements(By.CSS_SELECTOR, "circle.pareto-point")
    highlighted = panel.find_elements(By.CSS_SELECTOR, "circle.pareto-front")
    assert len(dots) == 12
    assert sorted(int(d.get_attribute("data-number")) for d in highlighted) == sorted(
        t["number"] for t in front["data"]
    )
    titles = [t.text for t in panel.find_elements(By.CSS_SELECTOR, "text.axis-title")]
    assert titles == ["val_f1 (higher is better)", "latency_ms (lower is better)"]
    # the x axis is the first objective: the front's dots left to right by val_f1
    by_x = sorted(highlighted, key=lambda d: float(d.get_attribute("cx")))
    f1 = {t["number"]: t["values"][0] for t in front["data"]}
    ordered = [f1[int(d.get_attribute("data-number"))] for d in by_x]
    assert ordered == sorted(ordered)
    if front["count"] > 1:
        assert panel.find_elements(By.CSS_SELECTOR, "polyline.pareto-line")
    legend = panel.find_element(By.ID, "pareto-legend").text
    assert legend.startswith(f"{front['count']} of 12 finished trials on the Pareto front")
    # a single-objective study's page has no Pareto panel
    open_page(browser, f"{studies.url}/ui/#/studies/1")
    assert browser.find_elements(By.ID, "pareto-box") == []
    assert console_errors(browser) == []
