"""The study page's analysis views in headless Chromium, checked against the API:
parallel coordinates and brushing, parameter importance, the optimization history, the
scatter plots' log ticks, and the server-side trial table (filters, columns, pages past
1,000 rows, sort, CSV/JSON export, selection for compare-trials), and the live refresh
keeping what the person chose."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from benchmarks.dashboard_load import drive_study, study_spec
from gridless.common.spec import parse_spec
from tests.browser.test_dashboard import (  # the browser fixtures, shared
    MIN_PAINTED,
    PAINTED,
    browser,
    console_errors,
    downloads,
    open_page,
)
from tests.conftest import Master, run_with_ray, tiny_spec

pytestmark = pytest.mark.browser

__all__ = ["browser", "downloads"]  # fixtures this module uses, imported above

FAILING_FUNCTION = """
def main(trial):
    if trial.params["lr"] > 0.01:
        raise RuntimeError(f"out of memory at lr={trial.params['lr']:.3g}")
    trial.report(1, val_loss=trial.params["lr"], val_r2=1.0 - trial.params["lr"])
"""


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory, ray_session: object) -> Iterator[Master]:
    """Study 1: the tiny two-stage digits study; study 2: a user function that raises for
    lr > 0.01 (most of its range). Both run by real Ray workers, served by a real master."""
    folder = tmp_path_factory.mktemp("user-study-page")
    (folder / "failing_page_fn.py").write_text(FAILING_FUNCTION)
    master = Master(tmp_path_factory.mktemp("study-page") / "run")
    master.server.start()
    run_with_ray(master, tiny_spec(early_stopping={"rule": "none"}), workers=2)
    failing = {
        "name": "part",
        "train": "failing_page_fn:main",
        "metric": "val_loss",
        "seed": 5,
        "space": {"lr": {"log_uniform": [1e-4, 1.0]}},
        "stages": [{"trials": 6, "epochs": 1}],
        "failures": {"first": 50, "window": 50},
    }
    run_with_ray(master, parse_spec(failing), workers=2, python_path=[str(folder)])
    yield master
    master.server.stop()


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    """A finished study of 1,050 trials in two stages (630 and 420), some failed and some
    diverged, generated through the worker API by simulated workers
    (benchmarks/dashboard_load.py): past the 1,000-row page limit."""
    master = Master(tmp_path_factory.mktemp("study-page-big") / "run")
    master.server.start()
    master.service.create_study(parse_spec(study_spec(1050)))
    assert drive_study(master.url, workers=8) == 1050
    yield master
    master.server.stop()


def api(master: Master, path: str, **params: Any) -> Any:
    answer = httpx.get(f"{master.url}/api/v1{path}", params=params, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def table_settled(browser: WebDriver) -> str:
    """The query of the trial page on show, once no query is in flight."""
    return str(
        browser.execute_script(
            "const t = document.getElementById('trials');"
            "return t && t.dataset.loading === '' ? t.dataset.query : '';"
        )
    )


def wait_for_table(browser: WebDriver, *parts: str) -> str:
    """Wait until the table shows a page whose query has every one of `parts`."""
    return str(
        wait_for(
            lambda: (q := table_settled(browser)) and all(p in q for p in parts) and q,
            f"a trial page with {parts}",
        )
    )


def column(browser: WebDriver, key: str) -> list[str]:
    cells = browser.find_elements(By.CSS_SELECTOR, f"#trials tbody td[data-col='{key}']")
    return [c.get_attribute("data-value") or "" for c in cells]


def numbers(browser: WebDriver) -> list[int]:
    return [int(v) for v in column(browser, "number")]


def drag(browser: WebDriver, element: WebElement, y0: int, y1: int) -> None:
    """Press at `y0` pixels from the element's centre, move to `y1`, release."""
    ActionChains(browser).move_to_element_with_offset(
        element, 0, y0
    ).click_and_hold().move_by_offset(0, (y1 - y0) // 2).move_by_offset(
        0, y1 - y0 - (y1 - y0) // 2
    ).release().perform()


def test_number_formats_and_log_ticks(studies: Master, browser: WebDriver) -> None:
    """The helpers every view uses, run in the page: ranges as people write them, and
    1-2-5 ticks on log axes ([16, 512] used to show only "16" and "106")."""
    open_page(browser, f"{studies.url}/ui/#/studies/1")
    got = browser.execute_script(
        """return {
          ticks: [logTicks(16, 512, 8), logTicks(1e-6, 10, 8), logTicks(16, 64, 7),
                  logTicks(16, 19, 5), logTicks(1e-12, 1e12, 6)],
          ranges: [fmtRange({log_uniform: [1e-6, 10]}), fmtRange({int_log_uniform: [16, 512]}),
                   fmtRange({uniform: [0, 0.9]}), fmtRange({log_uniform: [3.34e-4, 0.215]}),
                   fmtRange({choice: ["adam", "sgd"]}), fmtRange({log_uniform: [2.5e-5, 123456]})],
          linear: [linearTicks(0, 0.9, 6), linearTicks(16, 19, 5, true)],
        };"""
    )
    assert got["ticks"][0] == [20, 50, 100, 200, 500]
    assert got["ticks"][1] == [1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10]
    assert got["ticks"][2] == [20, 30, 40, 50, 60]
    assert got["ticks"][3] == [16, 17, 18, 19]  # inside one decade: linear
    assert got["ticks"][4] == [1e-10, 1e-5, 1, 1e5, 1e10]  # every 5th decade
    assert got["ranges"] == [
        "[1e-6, 10]",
        "[16, 512]",
        "[0, 0.9]",
        "[3.34e-4, 0.215]",
        "[adam, sgd]",
        "[2.5e-5, 1.23e5]",
    ]
    assert got["linear"] == [[0, 0.2, 0.4, 0.6, 0.8], [16, 17, 18, 19]]


def test_stage_ranges_are_printed_readably(big: Master, browser: WebDriver) -> None:
    study = api(big, "/studies/1")
    open_page(browser, f"{big.url}/ui/#/studies/1")
    rows = browser.find_elements(By.CSS_SELECTOR, "#stages tbody tr")
    first = [td.text for td in rows[0].find_elements(By.TAG_NAME, "td")]
    assert first[4:] == ["[1e-5, 1]", "[1e-6, 0.1]", "[16, 512]", "[0, 0.9]"]
    second = [td.text for td in rows[1].find_elements(By.TAG_NAME, "td")]
    lr = study["stages"][1]["space"]["learning_rate"]["log_uniform"]
    assert (
        second[4]
        == "[" + ", ".join(browser.execute_script("return arguments[0].map(fmtValue)", lr)) + "]"
    )
    assert "0000" not in " ".join(second), second


def test_parallel_coordinates_draw_an_axis_per_parameter_and_a_line_per_trial(
    studies: Master, browser: WebDriver
) -> None:
    points = api(studies, "/studies/1/points")
    space = api(studies, "/studies/1")["spec"]["space"]
    browser.get_log("browser")
    open_page(browser, f"{studies.url}/ui/#/studies/1")
    assert console_errors(browser) == []
    box = browser.find_element(By.ID, "parallel")
    axes = box.find_elements(By.CSS_SELECTOR, "g.axis")
    assert [a.get_attribute("data-param") for a in axes] == [*space, "val_accuracy"]
    kinds = {a.get_attribute("data-param"): a.get_attribute("data-kind") for a in axes}
    assert kinds == {
        "learning_rate": "log",
        "reg": "log",
        "hidden": "log",
        "val_accuracy": "score",
    }
    assert int(box.get_attribute("data-axes")) == len(space) + 1
    assert int(box.get_attribute("data-lines")) == points["count"] == 6
    assert int(box.get_attribute("data-failed")) == 0
    assert dict(browser.execute_script(PAINTED))["parallel coordinates"] > MIN_PAINTED
    # the toggle colours by score instead of by stage, and the lines are drawn again
    Select(browser.find_element(By.ID, "pc-color")).select_by_value("score")
    assert browser.find_element(By.ID, "parallel").get_attribute("data-color") == "score"
    assert dict(browser.execute_script(PAINTED))["parallel coordinates"] > MIN_PAINTED
    Select(browser.find_element(By.ID, "pc-color")).select_by_value("stage")
    assert console_errors(browser) == []


RED_PIXELS = """
const c = document.querySelector('#parallel canvas');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 100 && d[i] > 180 && d[i + 1] < 90 && d[i + 2] < 90) n++;
return n;
"""


def test_failed_trials_are_marked_in_parallel_coordinates_and_the_history(
    studies: Master, browser: WebDriver
) -> None:
    points = api(studies, "/studies/2/points")
    failed = sum(s in ("failed", "diverged") for s in points["state"])
    assert 0 < failed < points["count"]
    browser.get_log("browser")
    open_page(browser, f"{studies.url}/ui/#/studies/2")
    assert console_errors(browser) == []
    box = browser.find_element(By.ID, "parallel")
    assert int(box.get_attribute("data-failed")) == failed
    assert int(box.get_attribute("data-lines")) == points["count"]
    label = box.find_element(By.CSS_SELECTOR, ".failed-label").text
    assert label == f"failed or diverged ({failed})"
    assert browser.execute_script(RED_PIXELS) > 100  # the red dashed lines
    open_page(browser, f"{studies.url}/ui/#/studies/1")  # no failed trial: no red
    assert browser.execute_script(RED_PIXELS) == 0
    open_page(browser, f"{studies.url}/ui/#/studies/2")
    history = browser.execute_script(
        "const u = studyPlots.history;return {labels: u.series.map(s => s.label), data: u.data};"
    )
    index = history["labels"].index(f"failed or diverged ({failed})")
    assert sum(v is not None for v in history["data"][index]) == failed
    scored = [s for s in points["score"] if s is not None]
    assert all(v < min(scored) for v in history["data"][index] if v is not None)  # at the bottom


def running_best(points: dict[str, Any], maximize: bool) -> tuple[list[int], list[float | None]]:
    finished = sorted(
        (o, s) for o, s in zip(points["order"], points["score"], strict=True) if o is not None
    )
    best: float | None = None
    out: list[float | None] = []
    for _, score in finished:
        if score is not None and (best is None or (score > best if maximize else score < best)):
            best = score
        out.append(best)
    return [o for o, _ in finished], out


@pytest.mark.parametrize("study_id", [1, 2])
def test_history_plots_the_running_best_of_the_apis_scores(
    studies: Master, browser: WebDriver, study_id: int
) -> None:
    study = api(studies, f"/studies/{study_id}")
    points = api(studies, f"/studies/{study_id}/points")
    browser.get_log("browser")
    open_page(browser, f"{studies.url}/ui/#/studies/{study_id}")
    assert console_errors(browser) == []
    history = browser.execute_script(
        "const u = studyPlots.history;return {labels: u.series.map(s => s.label), data: u.data};"
    )
    orders, best = running_best(points, study["maximize"])
    assert history["data"][0] == orders == list(range(1, points["count"] + 1))
    assert history["data"][history["labels"].index("best so far")] == best
    assert best[-1] == study["best_score"]
    assert dict(browser.execute_script(PAINTED))["optimization history"] > MIN_PAINTED


def test_study_plot_legends_name_their_series_without_empty_values(
    studies: Master, browser: WebDriver
) -> None:
    """Every plot's legend once read "Value: --"; a scatter or the history has no
    value at rest, so its legend names the series and shows no value cells."""
    open_page(browser, f"{studies.url}/ui/#/studies/1")
    legends = browser.execute_script(
        """return [...document.querySelectorAll('#view .plot')].filter(p => p.querySelector('.u-legend')).map(p => ({
          title: p.dataset.plot,
          labels: [...p.querySelectorAll('.u-legend .u-label')].map(e => e.textContent),
          values: [...p.querySelectorAll('.u-legend .u-value')].map(e => e.textContent)}));"""
    )
    assert {"optimization history", *(f"{p} vs val_accuracy" for p in ("learning_rate",))} <= {
        legend["title"] for legend in legends
    }
    for legend in legends:
        assert "stage 1" in legend["labels"], legend
        assert legend["values"] == [], legend


def test_importance_bars_show_the_apis_values_and_method(
    studies: Master, browser: WebDriver
) -> None:
    body = api(studies, "/studies/1/importance")
    open_page(browser, f"{studies.url}/ui/#/studies/1")
    wait_for(lambda: browser.find_elements(By.ID, "importance-method"), "the importance panel")
    assert browser.find_element(By.ID, "importance-method").text == f"method: {body['method']}"
    groups = [("study", body["study"])] + [(f"stage-{s['stage']}", s) for s in body["stages"]]
    for scope, part in groups:
        group = browser.find_element(By.CSS_SELECTOR, f".importance-group[data-scope='{scope}']")
        shown = {
            row.get_attribute("data-param"): float(
                row.find_element(By.CLASS_NAME, "bar-value").get_attribute("data-value")
            )
            for row in group.find_elements(By.CLASS_NAME, "bar-row")
        }
        assert shown == (part["importances"] or {}), scope
        assert f"{part['trials']} trials" in group.find_element(By.TAG_NAME, "h3").text
    assert body["study"]["importances"] is not None
    assert sum(body["study"]["importances"].values()) == pytest.approx(1)
    notes = browser.find_elements(By.ID, "importance-note")
    assert [n.text for n in notes] == ([body["note"]] if body["note"] else [])


def test_importance_says_why_when_there_are_none(studies: Master, browser: WebDriver) -> None:
    body = api(studies, "/studies/2/importance")  # 6 trials, most of them failed
    assert body["study"]["importances"] is None
    assert body["note"]
    open_page(browser, f"{studies.url}/ui/#/studies/2")
    note = wait_for(lambda: browser.find_elements(By.ID, "importance-note"), "the note")
    assert note[0].text == body["note"]
    assert browser.find_elements(By.CSS_SELECTOR, "#importance .bar-row") == []


def test_scatter_log_axes_have_readable_ticks(big: Master, browser: WebDriver) -> None:
    open_page(browser, f"{big.url}/ui/#/studies/1")
    labels = browser.execute_script(
        "const u = plots.find(p => p.root.parentNode.dataset.plot === 'hidden vs val_accuracy');"
        "return u.axes[0]._values;"
    )
    shown = [v for v in labels if v]
    assert len(shown) >= 4, labels
    assert set(shown) <= {
        "20",
        "30",
        "40",
        "50",
        "60",
        "70",
        "80",
        "90",
        "100",
        "200",
        "300",
        "400",
        "500",
    }


def test_brushing_an_axis_filters_the_table_like_the_api(big: Master, browser: WebDriver) -> None:
    total = api(big, "/studies/1")["total_trials"]
    browser.get_log("browser")
    open_page(browser, f"{big.url}/ui/#/studies/1")
    hit = browser.find_element(By.CSS_SELECTOR, "#parallel .axis-hit[data-param='learning_rate']")
    drag(browser, hit, -80, 40)
    query = wait_for_table(browser, "param=learning_rate")
    lo = float(
        browser.find_element(
            By.CSS_SELECTOR, "input.range-lo[data-param='learning_rate']"
        ).get_attribute("value")
    )
    hi = float(
        browser.find_element(
            By.CSS_SELECTOR, "input.range-hi[data-param='learning_rate']"
        ).get_attribute("value")
    )
    assert 1e-5 < lo < hi < 1
    expected = api(big, "/studies/1/trials", param=f"learning_rate:{lo!r}:{hi!r}", limit=100)
    assert 0 < expected["count"] < total
    assert numbers(browser) == [t["number"] for t in expected["data"]]
    assert browser.find_element(By.ID, "trials-range").text.endswith(f"of {expected['count']}")
    box = browser.find_element(By.ID, "parallel")
    assert int(box.get_attribute("data-highlighted")) == expected["count"]
    assert "learning_rate" in query
    # a second brush on another axis narrows further: both filters, as the API ANDs them
    hit = browser.find_element(By.CSS_SELECTOR, "#parallel .axis-hit[data-param='dropout']")
    drag(browser, hit, -100, 60)
    wait_for_table(browser, "param=learning_rate", "param=dropout")
    d_lo = browser.find_element(
        By.CSS_SELECTOR, "input.range-lo[data-param='dropout']"
    ).get_attribute("value")
    d_hi = browser.find_element(
        By.CSS_SELECTOR, "input.range-hi[data-param='dropout']"
    ).get_attribute("value")
    both = httpx.get(
        f"{big.url}/api/v1/studies/1/trials",
        params=[
            ("param", f"learning_rate:{lo!r}:{hi!r}"),
            ("param", f"dropout:{d_lo}:{d_hi}"),
            ("limit", "100"),
        ],
    ).json()
    assert 0 < both["count"] < expected["count"]
    assert numbers(browser) == [t["number"] for t in both["data"]]
    assert (
        int(browser.find_element(By.ID, "parallel").get_attribute("data-highlighted"))
        == both["count"]
    )
    # clearing: a click on the axis removes its brush; the button removes them all
    hit = browser.find_element(By.CSS_SELECTOR, "#parallel .axis-hit[data-param='dropout']")
    ActionChains(browser).move_to_element(hit).click().perform()
    wait_for(
        lambda: "dropout" not in table_settled(browser) and table_settled(browser),
        "dropout cleared",
    )
    assert browser.find_element(By.ID, "trials-range").text.endswith(f"of {expected['count']}")
    browser.find_element(By.ID, "pc-clear").click()
    wait_for(lambda: "param" not in (q := table_settled(browser)) and q, "no filter")
    assert browser.find_element(By.ID, "trials-range").text == f"rows 1-100 of {total}"
    assert browser.find_element(By.ID, "parallel").get_attribute("data-highlighted") == ""
    assert console_errors(browser) == []


def test_range_inputs_set_the_brush_and_the_filter(big: Master, browser: WebDriver) -> None:
    open_page(browser, f"{big.url}/ui/#/studies/1")
    lo = browser.find_element(By.CSS_SELECTOR, "input.range-lo[data-param='hidden']")
    hi = browser.find_element(By.CSS_SELECTOR, "input.range-hi[data-param='hidden']")
    lo.send_keys("32\t")
    hi.send_keys("64\t")
    wait_for_table(browser, "param=hidden%3A32%3A64")
    expected = api(big, "/studies/1/trials", param="hidden:32:64", limit=100)
    assert numbers(browser) == [t["number"] for t in expected["data"]]
    brush = browser.find_element(By.CSS_SELECTOR, "#parallel .brush[data-param='hidden']")
    assert brush.get_attribute("visibility") == "visible"
    assert float(brush.get_attribute("height")) > 10
    box = browser.find_element(By.ID, "parallel")
    assert int(box.get_attribute("data-highlighted")) == expected["count"]
    lo.send_keys(Keys.CONTROL, "a")
    lo.send_keys("abc\t")  # not a number: marked, nothing sent
    assert "bad" in lo.get_attribute("class")
    assert "hidden%3A32%3A64" in table_settled(browser)
    assert browser.find_element(By.ID, "trials-error").text == ""


def test_table_filters_by_stage_and_state_and_pages_past_1000_rows(
    big: Master, browser: WebDriver
) -> None:
    total = api(big, "/studies/1")["total_trials"]
    assert total == 1050
    browser.get_log("browser")
    open_page(browser, f"{big.url}/ui/#/studies/1")
    assert browser.find_element(By.ID, "trials-range").text == "rows 1-100 of 1050"
    Select(browser.find_element(By.ID, "trials-limit")).select_by_value("500")
    wait_for_table(browser, "limit=500&offset=0")
    browser.find_element(By.ID, "trials-next").click()
    wait_for_table(browser, "limit=500&offset=500")
    browser.find_element(By.ID, "trials-next").click()
    wait_for_table(browser, "limit=500&offset=1000")
    assert browser.find_element(By.ID, "trials-range").text == "rows 1001-1050 of 1050"
    last = api(big, "/studies/1/trials", limit=500, offset=1000)
    assert numbers(browser) == [t["number"] for t in last["data"]]
    shown = browser.find_elements(By.CSS_SELECTOR, "#trials tbody td[data-col='number']")
    assert [c.text for c in shown] == [str(t["number"]) for t in last["data"]]
    assert browser.find_element(By.ID, "trials-next").get_attribute("disabled") == "true"
    browser.find_element(By.ID, "trials-prev").click()
    wait_for_table(browser, "limit=500&offset=500")
    assert browser.find_element(By.ID, "trials-range").text == "rows 501-1000 of 1050"
    # stage and state filters go back to the first page, and match the API
    Select(browser.find_element(By.ID, "f-stage")).select_by_value("2")
    wait_for_table(browser, "offset=0", "stage=2")
    stage2 = api(big, "/studies/1/trials", stage=2, limit=500)
    assert stage2["count"] == 420
    assert numbers(browser) == [t["number"] for t in stage2["data"]]
    assert set(column(browser, "stage")) == {"2"}
    Select(browser.find_element(By.ID, "f-stage")).select_by_value("")
    Select(browser.find_element(By.ID, "f-state")).select_by_value("failed")
    wait_for_table(browser, "state=failed")
    failed = api(big, "/studies/1/trials", state="failed", limit=500)
    assert 0 < failed["count"] < total
    assert numbers(browser) == [t["number"] for t in failed["data"]]
    assert (
        browser.find_element(By.ID, "trials-range").text
        == f"rows 1-{failed['count']} of {failed['count']}"
    )
    assert set(column(browser, "state")) == {"failed"}
    browser.find_element(By.ID, "f-clear").click()
    wait_for(lambda: (q := table_settled(browser)) and "state" not in q and q, "no filter")
    assert browser.find_element(By.ID, "trials-range").text == "rows 1-500 of 1050"
    assert console_errors(browser) == []


def test_table_sorts_server_side_by_a_clicked_column(big: Master, browser: WebDriver) -> None:
    open_page(browser, f"{big.url}/ui/#/studies/1")

    def header() -> WebElement:
        return browser.find_element(By.CSS_SELECTOR, "#trials th[data-col='params.hidden']")

    header().click()
    wait_for_table(browser, "sort=params.hidden")
    ascending = api(big, "/studies/1/trials", sort="params.hidden", limit=100)
    assert numbers(browser) == [t["number"] for t in ascending["data"]]
    assert "sorted-asc" in header().get_attribute("class")
    header().click()
    wait_for_table(browser, "sort=-params.hidden")
    descending = api(big, "/studies/1/trials", sort="-params.hidden", limit=100)
    assert numbers(browser) == [t["number"] for t in descending["data"]]
    assert [float(v) for v in column(browser, "params.hidden")] == [
        t["params"]["hidden"] for t in descending["data"]
    ]
    # the whole study is sorted, not the page: its first row is the study's largest
    every = [
        t for o in (0, 1000) for t in api(big, "/studies/1/trials", limit=1000, offset=o)["data"]
    ]
    assert float(column(browser, "params.hidden")[0]) == max(t["params"]["hidden"] for t in every)
    header().click()  # third click: back to the default order, best first
    wait_for(lambda: (q := table_settled(browser)) and "sort" not in q and q, "default order")
    assert column(browser, "rank")[:3] == ["1", "2", "3"]
    # by trial number, descending: the last trials, printed in full
    browser.find_element(By.CSS_SELECTOR, "#trials th[data-col='number']").click()
    wait_for_table(browser, "sort=number")
    browser.find_element(By.CSS_SELECTOR, "#trials th[data-col='number']").click()
    wait_for_table(browser, "sort=-number")
    cells = browser.find_elements(By.CSS_SELECTOR, "#trials tbody td[data-col='number']")
    assert [c.text for c in cells[:2]] == ["1049", "1048"]  # not "1050", "1050"


def test_columns_can_show_any_parameter_and_metric(big: Master, browser: WebDriver) -> None:
    study = api(big, "/studies/1")
    assert {"val_f1", "val_accuracy", "train_loss", "val_loss"} <= set(study["metric_names"])
    open_page(browser, f"{big.url}/ui/#/studies/1")
    browser.find_element(By.CSS_SELECTOR, "#trial-columns summary").click()
    browser.find_element(
        By.CSS_SELECTOR, "#trial-columns input[data-key='metrics.val_f1']"
    ).click()
    browser.find_element(By.CSS_SELECTOR, "#trial-columns input[data-key='params.reg']").click()
    heads = [
        th.get_attribute("data-col") for th in browser.find_elements(By.CSS_SELECTOR, "#trials th")
    ]
    assert "metrics.val_f1" in heads
    assert "params.reg" not in heads
    page = api(big, "/studies/1/trials", limit=100)
    shown = column(browser, "metrics.val_f1")
    assert [float(v) if v else None for v in shown] == [
        t["metrics"].get("val_f1") for t in page["data"]
    ]
    assert any(v for v in shown)
    browser.find_element(By.ID, "trials-next").click()  # the choice stays on other pages
    wait_for_table(browser, "offset=100")
    heads = [
        th.get_attribute("data-col") for th in browser.find_elements(By.CSS_SELECTOR, "#trials th")
    ]
    assert "metrics.val_f1" in heads
    assert "params.reg" not in heads


def wait_for_file(path: Path) -> Path:
    wait_for(path.exists, f"the download {path.name}", timeout=30)
    size = -1
    while size != path.stat().st_size:  # until the browser stopped writing
        size = path.stat().st_size
        time.sleep(0.3)
    return path


def test_csv_export_downloads_every_trial_with_params_and_metrics(
    big: Master, browser: WebDriver, downloads: Path
) -> None:
    study = api(big, "/studies/1")
    open_page(browser, f"{big.url}/ui/#/studies/1")
    browser.find_element(By.ID, "export-csv").click()
    target = wait_for_file(downloads / f"{study['name']}-trials.csv")
    with target.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == study["total_trials"] == 1050
    header = set(rows[0])
    assert {
        "number",
        "stage",
        "state",
        "best_score",
        "params.learning_rate",
        "params.hidden",
    } <= header
    assert {"metrics.val_f1", "metrics.val_accuracy", "warnings"} <= header
    by_number = {int(r["number"]): r for r in rows}
    pages = [api(big, "/studies/1/trials", limit=1000, offset=o)["data"] for o in (0, 1000)]
    for trial in pages[0] + pages[1]:
        row = by_number[trial["number"]]
        assert row["state"] == trial["state"]
        assert float(row["params.learning_rate"]) == pytest.approx(
            trial["params"]["learning_rate"]
        )
        if trial["state"] == "completed":
            assert float(row["metrics.val_f1"]) == pytest.approx(trial["metrics"]["val_f1"])
            assert float(row["best_score"]) == pytest.approx(trial["best_score"])


def test_json_export_keeps_the_current_filters(
    big: Master, browser: WebDriver, downloads: Path
) -> None:
    study = api(big, "/studies/1")
    open_page(browser, f"{big.url}/ui/#/studies/1")
    Select(browser.find_element(By.ID, "f-stage")).select_by_value("2")
    wait_for_table(browser, "stage=2")
    Select(browser.find_element(By.ID, "f-state")).select_by_value("completed")
    wait_for_table(browser, "stage=2", "state=completed")
    href = browser.find_element(By.ID, "export-json").get_attribute("href")
    assert "format=json" in href
    assert "limit" not in href
    target = downloads / f"{study['name']}-trials.json"
    target.unlink(missing_ok=True)
    browser.find_element(By.ID, "export-json").click()
    body = json.loads(wait_for_file(target).read_text())
    expected = api(big, "/studies/1/trials", stage=2, state="completed", limit=1000)
    items = body["data"] if isinstance(body, dict) else body
    assert sorted(t["number"] for t in items) == sorted(t["number"] for t in expected["data"])
    assert all(t["state"] == "completed" for t in items)


def test_selected_rows_open_the_compare_trials_page(studies: Master, browser: WebDriver) -> None:
    open_page(browser, f"{studies.url}/ui/#/studies/1")
    compare = browser.find_element(By.ID, "compare-selected")
    assert compare.get_attribute("disabled") == "true"
    boxes = browser.find_elements(By.CSS_SELECTOR, "#trials input.select-trial")
    chosen = sorted(int(b.get_attribute("data-number")) for b in (boxes[2], boxes[0]))
    boxes[2].click()
    boxes[0].click()
    assert compare.text == "compare selected (2)"
    assert browser.current_url.endswith("#/studies/1")  # a click on a box is not a row click
    compare.click()
    wait_for(
        lambda: browser.current_url.endswith(
            f"#/studies/1/compare-trials/{chosen[0]},{chosen[1]}"
        ),
        "the compare-trials URL",
    )


def test_live_refresh_keeps_filters_brush_page_sort_and_columns(
    tmp_path_factory: pytest.TempPathFactory, browser: WebDriver
) -> None:
    """The 2 s refresh of a running study redraws with new trials but keeps
    what the person chose."""
    master = Master(tmp_path_factory.mktemp("study-page-live") / "run")
    master.server.start()
    try:
        master.service.create_study(parse_spec(study_spec(80, name="live", stages=1)))
        assert drive_study(master.url, workers=4, trials=50) == 50
        open_page(browser, f"{master.url}/ui/#/studies/1")
        assert browser.find_element(By.ID, "study-progress").text == "50/80"
        Select(browser.find_element(By.ID, "f-state")).select_by_value("completed")
        wait_for_table(browser, "state=completed")
        lo = browser.find_element(By.CSS_SELECTOR, "input.range-lo[data-param='learning_rate']")
        lo.send_keys("1e-5\t")
        hi = browser.find_element(By.CSS_SELECTOR, "input.range-hi[data-param='learning_rate']")
        hi.send_keys("0.2\t")
        wait_for_table(browser, "state=completed", "param=learning_rate%3A0.00001%3A0.2")
        Select(browser.find_element(By.ID, "trials-limit")).select_by_value("25")
        wait_for_table(browser, "limit=25&offset=0")
        browser.find_element(By.CSS_SELECTOR, "#trials th[data-col='params.dropout']").click()
        wait_for_table(browser, "sort=params.dropout")
        browser.find_element(By.ID, "trials-next").click()
        wait_for_table(browser, "limit=25&offset=25")
        browser.find_element(By.CSS_SELECTOR, "#trial-columns summary").click()
        browser.find_element(
            By.CSS_SELECTOR, "#trial-columns input[data-key='metrics.val_f1']"
        ).click()
        before = table_settled(browser)
        assert drive_study(master.url, workers=4, trials=20) == 20
        wait_for(
            lambda: browser.find_element(By.ID, "study-progress").text == "70/80",
            "the refresh",
        )
        wait_for(
            lambda: int(browser.find_element(By.ID, "parallel").get_attribute("data-lines")) == 70,
            "new lines",
        )
        assert table_settled(browser) == before
        assert (
            Select(browser.find_element(By.ID, "f-state")).first_selected_option.text
            == "completed"
        )
        assert lo.get_attribute("value") == "0.00001"  # the same inputs: never rebuilt
        assert hi.get_attribute("value") == "0.2"
        brush = browser.find_element(
            By.CSS_SELECTOR, "#parallel .brush[data-param='learning_rate']"
        )
        assert brush.get_attribute("visibility") == "visible"
        assert browser.find_element(By.ID, "trials-range").text.startswith("rows 26-")
        assert "sorted-asc" in browser.find_element(
            By.CSS_SELECTOR, "#trials th[data-col='params.dropout']"
        ).get_attribute("class")
        heads = [
            th.get_attribute("data-col")
            for th in browser.find_elements(By.CSS_SELECTOR, "#trials th")
        ]
        assert "metrics.val_f1" in heads
        expected = httpx.get(f"{master.url}/api/v1/studies/1/trials?{before}").json()
        wait_for(
            lambda: numbers(browser) == [t["number"] for t in expected["data"]],
            "the refreshed page",
        )
    finally:
        master.server.stop()
