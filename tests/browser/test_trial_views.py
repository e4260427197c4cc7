"""The trial-level pages in a real browser: compare trials, the trial page's legends,
epoch axes and validation loss, the checkpoint detail beside its list, download names.

One real master serves two studies run by real Ray workers: the tiny digits MLP (two
stages, over 20 checkpoints: a list longer than the window) and a user's function ranked by
its own metric (val_r2).
"""

from __future__ import annotations

import hashlib
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from gridless.common.checkpoints import trial_folder
from gridless.common.spec import parse_spec
from tests.browser.test_dashboard import (
    MIN_PAINTED,
    PAINTED,
    console_errors,
    open_page,
)
from tests.chromium import chromium
from tests.conftest import Master, run_with_ray, tiny_spec

pytestmark = [pytest.mark.browser, pytest.mark.ray, pytest.mark.slow]

USER_FUNCTION = """
def main(trial):
    lr = trial.params["lr"]
    for epoch in trial.epochs():
        r2 = 1.0 - (1.0 - lr) ** epoch
        trial.report(epoch, train_loss=1.2 - r2, val_loss=1.0 - r2, val_r2=r2)
        trial.save({"epoch": epoch})
"""

# Every curve plot (uPlot instance) of the page: title, x range, series labels, data.
PLOTS = """
return plots.map(u => ({
  title: u.root.parentNode.dataset.plot,
  x: [u.scales.x.min, u.scales.x.max],
  labels: u.series.map(s => s.label),
  data: u.data.map(col => Array.from(col)),
  legend: LEGEND(u.root),
}));
"""
# A plot's uPlot legend as [label, value] rows, as the page shows them.
LEGEND_JS = """
const LEGEND = (root) => [...root.querySelectorAll('.u-legend .u-series')].map(tr => [
  tr.querySelector('.u-label').textContent, tr.querySelector('.u-value').textContent]);
"""
PLOTS = LEGEND_JS + PLOTS


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, ray_session: object) -> Iterator[Master]:
    """Study 1: tiny digits, 16 trials x 2 epochs then 4 x 3; study 2: a user's function."""
    master = Master(tmp_path_factory.mktemp("trial-views") / "run")
    master.server.start()
    user = tmp_path_factory.mktemp("trial-views-user")
    (user / "r2_compare.py").write_text(textwrap.dedent(USER_FUNCTION))
    try:
        run_with_ray(
            master,
            tiny_spec(
                early_stopping={"rule": "none"},
                stages=[{"trials": 16, "epochs": 2}, {"trials": 4, "epochs": 3}],
            ),
        )
        spec = parse_spec(
            {
                "name": "r2-fn",
                "train": "r2_compare:main",
                "metric": {"name": "val_r2", "mode": "max"},
                "space": {"lr": {"log_uniform": [1e-2, 0.9]}},
                "stages": [{"trials": 3, "epochs": 3}],
                "early_stopping": {"rule": "none"},
            }
        )
        sys.path.insert(0, str(user))  # the master imports the function for its checks
        try:
            run_with_ray(master, spec, python_path=[str(user)])
        finally:
            sys.path.remove(str(user))
        yield master
    finally:
        master.server.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trial-views-downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Chromium, 800 px high: the checkpoint table runs past the window."""
    profile = tmp_path_factory.mktemp("trial-views-profile")
    driver = chromium(profile, height=800, downloads=downloads)
    yield driver
    driver.quit()


def trial_detail(master: Master, study: int, number: int) -> dict[str, Any]:
    response = httpx.get(f"{master.url}/api/v1/studies/{study}/trials/{number}")
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


def last_value(column: list[float | None]) -> float | None:
    return next((v for v in reversed(column) if v is not None), None)


def legend_values(legend: list[list[str]]) -> dict[str, str]:
    return dict(legend)


def legend_of(browser: WebDriver, title: str) -> dict[str, str]:
    script = LEGEND_JS + "return LEGEND(document.querySelector(`[data-plot='${arguments[0]}']`));"
    return legend_values(browser.execute_script(script, title))


def chosen_trials(master: Master) -> list[int]:
    """Two stage-2 trials (3 epochs) and a stage-1 trial (2 epochs): different lengths."""
    trials = httpx.get(f"{master.url}/api/v1/studies/1/trials?limit=100").json()["data"]
    second = [t["number"] for t in trials if t["stage"] == 2][:2]
    first = [t["number"] for t in trials if t["stage"] == 1][:1]
    assert len(second) == 2
    assert len(first) == 1
    return [*second, *first]


def only_expected_errors(driver: WebDriver, *allowed: str) -> list[dict[str, Any]]:
    return [e for e in console_errors(driver) if not any(a in e["message"] for a in allowed)]


def test_compare_page_shows_one_series_per_trial_with_the_apis_last_values(
    served: Master, browser: WebDriver
) -> None:
    numbers = chosen_trials(served)
    details = {n: trial_detail(served, 1, n) for n in numbers}
    browser.get_log("browser")
    open_page(
        browser, f"{served.url}/ui/#/studies/1/compare-trials/{','.join(map(str, numbers))},999"
    )
    # the one error in the console is the missing trial's 404, said on the page too
    assert only_expected_errors(browser, "/trials/999 ") == []
    missing = browser.find_elements(By.CSS_SELECTOR, "#compare-missing .err")
    assert [m.text for m in missing] == ["no trial 999 in this study"]

    shown = browser.execute_script(PLOTS)
    assert [p["title"] for p in shown] == [
        "training loss",
        "validation loss",
        "train / validation accuracy (dashed: train)",
    ]
    last_epoch = max(d["last_epoch"] for d in details.values())
    for p in shown:
        assert p["x"] == [0, last_epoch], p["title"]  # epochs aligned, one range
        assert p["data"][0] == list(range(1, last_epoch + 1))
    for title, name in (("training loss", "train_loss"), ("validation loss", "val_loss")):
        p = next(p for p in shown if p["title"] == title)
        assert p["labels"] == ["epoch", *(f"trial {n}" for n in numbers)]
        for n, column in zip(numbers, p["data"][1:], strict=True):
            metrics = details[n]["metrics"]
            assert last_value(column) == metrics[-1][name]
            assert column[metrics[-1]["epoch"] - 1] == metrics[-1][name]
        at_rest = legend_values(p["legend"])
        assert at_rest["epoch"] == "last"
        for n in numbers:
            assert float(at_rest[f"trial {n}"]) == pytest.approx(
                details[n]["metrics"][-1][name], rel=1e-3
            )
    accuracy = shown[2]
    for n in numbers:
        i = accuracy["labels"].index(f"trial {n} validation")
        assert last_value(accuracy["data"][i]) == details[n]["metrics"][-1]["val_accuracy"]
        j = accuracy["labels"].index(f"trial {n} train")
        assert last_value(accuracy["data"][j]) == details[n]["metrics"][-1]["train_accuracy"]
    painted = dict(browser.execute_script(PAINTED))
    assert all(v > MIN_PAINTED for v in painted.values()), painted

    rows = browser.find_elements(By.CSS_SELECTOR, "#compare-legend tbody tr")
    assert [int(r.get_attribute("data-number")) for r in rows] == numbers
    for row, n in zip(rows, numbers, strict=True):
        link = row.find_element(By.CSS_SELECTOR, "td a")
        assert link.text == f"trial {n}"
        assert link.get_attribute("href").endswith(f"#/studies/1/trials/{n}")
        headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#compare-legend th")]
        cells = row.find_elements(By.TAG_NAME, "td")
        value = cells[headers.index("last val_loss")].get_attribute("data-value")
        assert float(value) == details[n]["metrics"][-1]["val_loss"]


def test_compare_page_of_a_user_function_plots_its_own_metric(
    served: Master, browser: WebDriver
) -> None:
    trials = httpx.get(f"{served.url}/api/v1/studies/2/trials").json()["data"]
    numbers = [t["number"] for t in trials]
    browser.get_log("browser")
    open_page(browser, f"{served.url}/ui/#/studies/2/compare-trials/{','.join(map(str, numbers))}")
    assert console_errors(browser) == []
    shown = {p["title"]: p for p in browser.execute_script(PLOTS)}
    assert list(shown) == ["val_r2 (the study's metric, max)", "training loss", "validation loss"]
    own = shown["val_r2 (the study's metric, max)"]
    assert own["labels"] == ["epoch", *(f"trial {n}" for n in numbers)]
    for n, column in zip(numbers, own["data"][1:], strict=True):
        assert last_value(column) == trial_detail(served, 2, n)["metrics"][-1]["metrics"]["val_r2"]
    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#compare-legend th")]
    assert "best val_r2" in headers
    assert "last val_r2" in headers


def test_compare_is_reachable_from_the_trial_page(served: Master, browser: WebDriver) -> None:
    first, *others = chosen_trials(served)
    open_page(browser, f"{served.url}/ui/#/studies/1/trials/{first}")
    field = browser.find_element(By.ID, "compare-with")
    field.send_keys(", ".join(map(str, others)) + f", {first}")
    browser.execute_script("document.body.dataset.ready = ''")
    browser.find_element(By.CSS_SELECTOR, "#compare-form button").click()
    deadline = time.monotonic() + 20
    while browser.execute_script("return document.body.dataset.ready") != "1":
        assert time.monotonic() < deadline, "the compare page did not render"
        time.sleep(0.1)
    assert browser.current_url.endswith(
        f"#/studies/1/compare-trials/{','.join(map(str, [first, *others]))}"
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#compare-legend tbody tr")
    assert [int(r.get_attribute("data-number")) for r in rows] == [first, *others]


def test_trial_page_legends_name_their_series_and_show_live_values(
    served: Master, browser: WebDriver
) -> None:
    number = chosen_trials(served)[0]
    detail = trial_detail(served, 1, number)
    browser.get_log("browser")
    open_page(browser, f"{served.url}/ui/#/studies/1/trials/{number}")
    assert console_errors(browser) == []
    shown = {p["title"]: p for p in browser.execute_script(PLOTS)}
    for title, p in shown.items():
        legend = legend_values(p["legend"])
        assert "Value" not in legend, title
        assert list(legend) == p["labels"], title  # every series by its name
        assert legend["epoch"] == "last"
        assert not {"-", "--"} & set(legend.values()), (title, legend)  # a value at rest
    accuracy = legend_values(shown["train / validation accuracy"]["legend"])
    assert float(accuracy["validation"]) == pytest.approx(
        detail["metrics"][-1]["val_accuracy"], rel=1e-3
    )
    # live: under the cursor, the legend shows that epoch's values
    box = browser.find_element(By.CSS_SELECTOR, '[data-plot="train / validation accuracy"]')
    over = box.find_element(By.CSS_SELECTOR, ".u-over")
    ActionChains(browser).move_to_element_with_offset(over, over.size["width"] // 4, 0).perform()
    deadline = time.monotonic() + 5
    while (live := legend_of(browser, "train / validation accuracy"))["epoch"] == "last":
        assert time.monotonic() < deadline, "the legend did not follow the cursor"
        time.sleep(0.1)
    epoch = int(live["epoch"])
    metrics = next(m for m in detail["metrics"] if m["epoch"] == epoch)
    assert float(live["validation"]) == pytest.approx(metrics["val_accuracy"], rel=1e-3)
    assert float(live["train"]) == pytest.approx(metrics["train_accuracy"], rel=1e-3)


def test_trial_page_curves_share_one_epoch_range(served: Master, browser: WebDriver) -> None:
    for number in chosen_trials(served)[1:]:  # three epochs, then two
        detail = trial_detail(served, 1, number)
        open_page(browser, f"{served.url}/ui/#/studies/1/trials/{number}")
        shown = browser.execute_script(PLOTS)
        assert {p["title"] for p in shown} >= {
            "loss per iteration",
            "train / validation loss (per epoch)",
            "train / validation accuracy",
        }
        assert {tuple(p["x"]) for p in shown} == {(0, detail["last_epoch"])}
        iterations = next(p for p in shown if p["title"] == "loss per iteration")["data"][0]
        assert 0 < iterations[0] < 1
        assert iterations[-1] == detail["last_epoch"]


def test_trial_page_draws_the_validation_loss_with_the_training_loss(
    served: Master, browser: WebDriver
) -> None:
    number = chosen_trials(served)[0]
    detail = trial_detail(served, 1, number)
    open_page(browser, f"{served.url}/ui/#/studies/1/trials/{number}")
    p = next(p for p in browser.execute_script(PLOTS) if p["title"] == "loss per iteration")
    assert p["labels"] == ["epoch", "training loss (per iteration)", "val_loss (per epoch)"]
    xs, train, val = p["data"]
    drawn = {x: v for x, v in zip(xs, val, strict=True) if v is not None}
    assert drawn == {m["epoch"]: m["val_loss"] for m in detail["metrics"]}
    history = [v for m in detail["metrics"] for v in m["stats"]["loss_history"]]
    assert [v for v in train if v is not None] == history
    # its colour (#f04438) is on the canvas: a line and a point per epoch
    red = browser.execute_script(
        """
        const canvas = document.querySelector('[data-plot="loss per iteration"] canvas');
        const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4)
          if (d[i + 3] > 200 && Math.abs(d[i] - 240) < 16 && Math.abs(d[i + 1] - 68) < 16
              && Math.abs(d[i + 2] - 56) < 16) n++;
        return n;
        """
    )
    assert red > 100, red


def open_far_checkpoint(master: Master, browser: WebDriver) -> dict[str, Any]:
    """Open the checkpoints page, click its last row (below the window), wait for the detail."""
    listing = httpx.get(f"{master.url}/api/v1/studies/1/checkpoints?limit=1000").json()["data"]
    assert len(listing) >= 20  # retention keeps the best and the latest per trial
    open_page(browser, f"{master.url}/ui/#/checkpoints/1")
    rows = browser.find_elements(By.CSS_SELECTOR, "#checkpoints tbody tr")
    assert len(rows) == len(listing)
    below = browser.execute_script("return arguments[0].getBoundingClientRect().top", rows[-1])
    assert below > browser.execute_script("return innerHeight")  # far down: out of the window
    rows[-1].click()
    deadline = time.monotonic() + 10
    while not browser.find_elements(By.ID, "download"):
        assert time.monotonic() < deadline, "the checkpoint detail did not open"
        time.sleep(0.1)
    return listing[-1]


INSIDE = """
const r = arguments[0].getBoundingClientRect();
return r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth
  && r.height > 0;
"""


def test_checkpoint_detail_is_beside_the_list_and_in_view_after_a_click_far_down(
    served: Master, browser: WebDriver
) -> None:
    browser.get_log("browser")
    chosen = open_far_checkpoint(served, browser)
    detail = browser.find_element(By.ID, "checkpoint-detail")
    assert browser.execute_script(INSIDE, detail)
    assert browser.execute_script(INSIDE, browser.find_element(By.ID, "download"))
    assert detail.find_element(By.TAG_NAME, "h2").text == chosen["name"]
    assert f'"epoch": {chosen["epoch"]}' in browser.find_element(By.ID, "checkpoint-meta").text
    table = browser.find_element(By.ID, "checkpoints").rect
    assert detail.rect["x"] >= table["x"] + table["width"]  # beside the list, not below it
    selected = browser.find_elements(By.CSS_SELECTOR, "#checkpoints tbody tr.selected")
    assert len(selected) == 1
    cells = selected[0].find_elements(By.TAG_NAME, "td")
    assert (cells[0].text, int(cells[1].text)) == (chosen["name"], chosen["trial_number"])
    # a re-sort keeps the highlight on the same checkpoint
    browser.find_element(By.XPATH, "//table[@id='checkpoints']//th[text()='trial']").click()
    selected = browser.find_elements(By.CSS_SELECTOR, "#checkpoints tbody tr.selected")
    assert len(selected) == 1
    cells = selected[0].find_elements(By.TAG_NAME, "td")
    assert (cells[0].text, int(cells[1].text)) == (chosen["name"], chosen["trial_number"])
    assert console_errors(browser) == []


def test_a_downloaded_checkpoint_is_named_after_its_study_and_trial(
    served: Master, browser: WebDriver, downloads: Path
) -> None:
    chosen = open_far_checkpoint(served, browser)
    link = browser.find_element(By.ID, "download")
    expected = f"tiny-trial{trial_folder(chosen['trial_number'])}-{chosen['name']}"
    assert link.get_attribute("download") == expected
    link.click()
    target = downloads / expected
    deadline = time.monotonic() + 20
    while not target.exists():
        assert time.monotonic() < deadline, sorted(p.name for p in downloads.iterdir())
        time.sleep(0.1)
    time.sleep(0.3)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == chosen["sha256"]
