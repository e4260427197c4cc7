"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from gridless.common.checkpoints import trial_folder
from gridless.worker.loop import run_worker
from tests.chromium import chromium
from tests.conftest import Master, tiny_spec
from tests.jobs import build_ensembles

pytestmark = pytest.mark.browser

# How many canvas pixels must be painted for a plot to count as rendered.
MIN_PAINTED = 500


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    """A finished two-stage digits study, served by a real master."""
    master = Master(tmp_path_factory.mktemp("dash") / "run", launcher="thread")
    master.server.start()
    master.service.create_study(tiny_spec(early_stopping={"rule": "none"}))
    run_worker(master.url, master.store_root, "t1")
    yield master
    master.server.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    driver = chromium(tmp_path_factory.mktemp("profile"), downloads=downloads)
    yield driver
    driver.quit()


def open_page(driver: WebDriver, url: str) -> None:
    driver.get("about:blank")
    driver.get(url)
    deadline = time.monotonic() + 20
    while driver.execute_script("return document.body.dataset.ready") != "1":
        assert time.monotonic() < deadline, f"{url} did not finish rendering"
        time.sleep(0.1)


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


PAINTED = """
return [...document.querySelectorAll('.plot')].map(box => {
  const canvas = box.querySelector('canvas');
  if (!canvas) return [box.dataset.plot, 0];
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
  return [box.dataset.plot, n];
});
"""


def artifact_dir(tmp: Path) -> Path:
    folder = Path(os.environ.get("GRIDLESS_ARTIFACTS", tmp))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_study_page_renders_every_plot_and_shows_the_apis_numbers(
    study: Master, browser: WebDriver, tmp_path: Path
) -> None:
    api = httpx.get(f"{study.url}/api/v1/studies/1").json()
    trials = httpx.get(f"{study.url}/api/v1/studies/1/trials?limit=1000").json()["data"]
    browser.get_log("browser")
    open_page(browser, f"{study.url}/ui/#/studies/1")
    assert console_errors(browser) == []
    painted = browser.execute_script(PAINTED)
    assert [name for name, _ in painted] == [
        "parallel coordinates",
        "optimization history",
        "learning_rate vs val_accuracy",
        "reg vs val_accuracy",
        "hidden vs val_accuracy",
    ]
    assert all(n > MIN_PAINTED for _, n in painted), painted
    best = browser.find_element(By.ID, "study-best")
    assert float(best.get_attribute("data-value")) == api["best_score"]
    assert best.text == f"{api['best_score']:.4f}"
    assert (
        browser.find_element(By.ID, "study-progress").text
        == f"{api['finished_trials']}/{api['total_trials']}"
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr")
    assert len(rows) == len(trials)
    for row, trial in zip(rows, trials, strict=True):
        cells = {c.get_attribute("data-col"): c for c in row.find_elements(By.TAG_NAME, "td")}
        assert int(cells["number"].text) == trial["number"]
        score = cells["best_score"]
        if trial["best_score"] is None:
            assert score.text == "-"
        else:
            assert float(score.get_attribute("data-value")) == trial["best_score"]
            assert score.text == f"{trial['best_score']:.4f}"
        learning_rate = cells["params.learning_rate"].get_attribute("data-value")
        assert float(learning_rate) == trial["params"]["learning_rate"]
    stage_epochs = [
        int(r.find_elements(By.TAG_NAME, "td")[3].text)
        for r in browser.find_elements(By.CSS_SELECTOR, "#stages tbody tr")
    ]
    assert stage_epochs == [s["epochs"] for s in api["stages"]]
    browser.save_screenshot(str(artifact_dir(tmp_path) / "dashboard-study.png"))


def test_trial_table_sorts_by_a_clicked_column(study: Master, browser: WebDriver) -> None:
    open_page(browser, f"{study.url}/ui/#/studies/1")
    sorted_by = "return document.getElementById('trials').dataset.query"  # the server sorts

    def header() -> Any:  # the table is drawn anew with each page the server sends
        return browser.find_element(By.XPATH, "//table[@id='trials']//th[text()='learning_rate']")

    def column() -> list[float]:
        return [
            float(c.get_attribute("data-value"))
            for c in browser.find_elements(
                By.CSS_SELECTOR, "#trials tbody td[data-col='params.learning_rate']"
            )
        ]

    header().click()
    deadline = time.monotonic() + 10
    while not browser.execute_script(sorted_by).endswith("sort=params.learning_rate"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert column() == sorted(column())
    header().click()
    while not browser.execute_script(sorted_by).endswith("sort=-params.learning_rate"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert column() == sorted(column(), reverse=True)
    assert "sorted-desc" in header().get_attribute("class")


def test_trial_page_renders_curves_and_first_layer_weights(
    study: Master, browser: WebDriver
) -> None:
    best = httpx.get(f"{study.url}/api/v1/studies/1/trials?limit=1").json()["data"][0]
    browser.get_log("browser")
    open_page(browser, f"{study.url}/ui/#/trials/{best['id']}")
    assert console_errors(browser) == []
    painted = dict(browser.execute_script(PAINTED))
    assert set(painted) == {
        "loss per iteration",
        "train / validation loss (per epoch)",
        "train / validation accuracy",
        "update:weight ratio (want ~1e-3)",
        "activation std per layer",
        "gradient std per layer",
    }
    assert all(n > MIN_PAINTED for n in painted.values()), painted
    assert len(browser.find_elements(By.CSS_SELECTOR, "#first-layer canvas")) == 16
    detail = httpx.get(f"{study.url}/api/v1/trials/{best['id']}").json()
    cards = {
        c.find_element(By.CLASS_NAME, "k").text: c.find_element(By.CLASS_NAME, "v").text
        for c in browser.find_elements(By.CSS_SELECTOR, ".card")
    }
    assert cards["best val_accuracy"] == f"{detail['best_score']:.4f}"
    assert (cards["state"], cards["stage"], cards["attempt"]) == (
        detail["state"],
        str(detail["stage"]),
        str(detail["attempt"]),
    )
    scores = [
        float(r.find_elements(By.TAG_NAME, "td")[2].get_attribute("data-value"))
        for r in browser.find_elements(By.CSS_SELECTOR, "#trial-checkpoints tbody tr")
    ]
    assert scores == [c["score"] for c in detail["checkpoints"]]
    browser.find_element(By.ID, "logloss").click()  # the log-scale toggle redraws
    assert dict(browser.execute_script(PAINTED))["loss per iteration"] > MIN_PAINTED
    assert console_errors(browser) == []


def test_checkpoint_browser_shows_metadata_and_downloads(
    study: Master, browser: WebDriver, downloads: Path
) -> None:
    listing = httpx.get(f"{study.url}/api/v1/studies/1/checkpoints").json()["data"]
    open_page(browser, f"{study.url}/ui/#/checkpoints/1")
    rows = browser.find_elements(By.CSS_SELECTOR, "#checkpoints tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == [
        c["name"] for c in listing
    ]
    scores = [
        float(r.find_elements(By.TAG_NAME, "td")[3].get_attribute("data-value")) for r in rows
    ]
    assert scores == [c["score"] for c in listing]
    rows[0].click()
    deadline = time.monotonic() + 10
    while not browser.find_elements(By.ID, "download"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert f'"epoch": {listing[0]["epoch"]}' in browser.find_element(By.ID, "checkpoint-meta").text
    browser.find_element(By.ID, "download").click()
    # named after its study and trial: file names repeat across trials
    target = (
        downloads / f"tiny-trial{trial_folder(listing[0]['trial_number'])}-{listing[0]['name']}"
    )
    deadline = time.monotonic() + 20
    while not target.exists():
        assert time.monotonic() < deadline, "the download did not arrive"
        time.sleep(0.1)
    time.sleep(0.3)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == listing[0]["sha256"]
    assert console_errors(browser) == []


def test_unknown_study_shows_an_error_not_a_blank_page(study: Master, browser: WebDriver) -> None:
    open_page(browser, f"{study.url}/ui/#/studies/99")
    assert (
        browser.find_element(By.CSS_SELECTOR, "#view .err").text == "/studies/99: 404 no study 99"
    )


def test_ensembles_panel_shows_the_apis_numbers(study: Master, browser: WebDriver) -> None:
    rows = build_ensembles(study.url, 1, {"k": 2, "retrain": False})["rows"]
    browser.get_log("browser")
    open_page(browser, f"{study.url}/ui/#/studies/1")
    deadline = time.monotonic() + 10
    while not browser.find_elements(By.CSS_SELECTOR, "#ensemble-table tbody tr"):
        assert time.monotonic() < deadline, "the ensembles panel did not render"
        time.sleep(0.1)
    shown = browser.find_elements(By.CSS_SELECTOR, "#ensemble-table tbody tr")
    assert len(shown) == len(rows)
    for tr, row in zip(shown, rows, strict=True):
        cells = tr.find_elements(By.TAG_NAME, "td")
        assert (cells[0].text, cells[1].text) == (row["kind"], row["name"])
        assert float(cells[3].get_attribute("data-value")) == row["val_accuracy"]
        assert cells[4].text == f"{row['test_accuracy']:.4f}"
    assert console_errors(browser) == []


R2_FUNCTION = """
def main(trial):
    lr = trial.params["lr"]
    for epoch in trial.epochs():
        r2 = 1.0 - (1.0 - lr) ** epoch - 0.5 * (lr < 0.1)
        trial.report(epoch, val_loss=1.0 - r2, val_rmse=(1.5 - r2) ** 0.5, val_r2=r2)
        trial.save({"epoch": epoch})
"""


@pytest.fixture(scope="module")
def r2_study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    """A finished study of a user's function ranked by R², served by a real master."""
    import sys

    from gridless.common.spec import parse_spec

    folder = tmp_path_factory.mktemp("user")
    (folder / "r2_fn.py").write_text(R2_FUNCTION)
    sys.path.insert(0, str(folder))
    master = Master(tmp_path_factory.mktemp("dash-r2") / "run")
    master.server.start()
    spec = parse_spec(
        {
            "name": "r2",
            "train": "r2_fn:main",
            "metric": {"name": "val_r2", "mode": "max"},
            "space": {"lr": {"log_uniform": [1e-3, 0.9]}},
            "stages": [{"trials": 4, "epochs": 3}],
            "early_stopping": {"rule": "none"},
        }
    )
    master.service.create_study(spec)
    run_worker(master.url, master.store_root, "t1")
    sys.path.remove(str(folder))
    yield master
    master.server.stop()


def test_trial_page_of_a_user_function_plots_its_own_metric(
    r2_study: Master, browser: WebDriver
) -> None:
    trials = httpx.get(f"{r2_study.url}/api/v1/studies/1/trials").json()["data"]
    for trial in (trials[0], trials[-1]):  # the best, and the worst (R² below zero)
        browser.get_log("browser")
        open_page(browser, f"{r2_study.url}/ui/#/trials/{trial['id']}")
        assert console_errors(browser) == []
        painted = dict(browser.execute_script(PAINTED))
        assert set(painted) == {
            "val_r2 (the study's metric, max)",
            "train / validation loss (per epoch)",
            "val_rmse",
        }
        assert all(n > MIN_PAINTED for n in painted.values()), painted
        cards = {
            c.find_element(By.CLASS_NAME, "k").text: c.find_element(By.CLASS_NAME, "v").text
            for c in browser.find_elements(By.CSS_SELECTOR, ".card")
        }
        assert cards["best val_r2"] == f"{trial['best_score']:.4f}"
    assert trials[-1]["best_score"] < 0 < trials[0]["best_score"]
    files = [
        r.find_elements(By.TAG_NAME, "td")[0].text
        for r in browser.find_elements(By.CSS_SELECTOR, "#trial-checkpoints tbody tr")
    ]
    assert files
    assert all(name.startswith("r2_-") for name in files), files


FAILING_FUNCTION = """
def main(trial):
    print("loading my data")
    if trial.params["lr"] > 0.01:
        raise RuntimeError(f"out of memory at lr={trial.params['lr']:.3g}")
    trial.report(1, val_loss=trial.params["lr"])
"""


@pytest.fixture(scope="module")
def failing_study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    """A study of a user's function that raises for part of its range, and a second one
    whose function always raises: the circuit breaker paused it."""
    import sys

    from gridless.common.spec import parse_spec

    folder = tmp_path_factory.mktemp("user-failing")
    (folder / "failing_fn.py").write_text(FAILING_FUNCTION)
    sys.path.insert(0, str(folder))
    master = Master(tmp_path_factory.mktemp("dash-failing") / "run")
    master.server.start()
    for name, space, failures in (
        ("part", [1e-4, 1.0], {}),
        ("always", [0.1, 1.0], {"first": 2}),
    ):
        spec = parse_spec(
            {
                "name": name,
                "train": "failing_fn:main",
                "metric": "val_loss",
                "space": {"lr": {"log_uniform": space}},
                "stages": [{"trials": 6, "epochs": 1}],
                "failures": failures,
            }
        )
        master.service.create_study(spec)
        run_worker(master.url, master.store_root, "t1", max_trials=6 if name == "part" else 2)
    sys.path.remove(str(folder))
    yield master
    master.server.stop()


def test_a_failed_trial_shows_its_error_and_links_its_log(
    failing_study: Master, browser: WebDriver
) -> None:
    trials = httpx.get(f"{failing_study.url}/api/v1/studies/1/trials?state=failed").json()
    trial = trials["data"][0]
    browser.get_log("browser")
    open_page(browser, f"{failing_study.url}/ui/#/trials/{trial['id']}")
    assert console_errors(browser) == []
    shown = browser.find_element(By.ID, "trial-error").text
    assert shown.startswith("RuntimeError: out of memory at lr=")
    assert shown == trial["error"].strip()
    link = browser.find_element(By.ID, "trial-log").get_attribute("href")
    log = httpx.get(link).text
    assert "loading my data" in log
    assert "RuntimeError: out of memory" in log


def test_a_paused_study_says_why_on_its_page(failing_study: Master, browser: WebDriver) -> None:
    api = httpx.get(f"{failing_study.url}/api/v1/studies/2").json()
    assert api["state"] == "paused"
    open_page(browser, f"{failing_study.url}/ui/#/studies/2")
    reason = browser.find_element(By.ID, "study-reason").text
    assert reason.startswith("paused by gridless: the first 2 trials all failed")
    assert api["state_reason"] in reason


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    """Two finished studies in one database: the second's trial numbers are not its ids."""
    import sys

    from gridless.common.spec import parse_spec

    folder = tmp_path_factory.mktemp("user-two")
    (folder / "r2_two.py").write_text(R2_FUNCTION)
    sys.path.insert(0, str(folder))
    master = Master(tmp_path_factory.mktemp("dash-two") / "run")
    master.server.start()
    for name in ("first", "second"):
        spec = parse_spec(
            {
                "name": name,
                "train": "r2_two:main",
                "metric": {"name": "val_r2", "mode": "max"},
                "space": {"lr": {"log_uniform": [1e-3, 0.9]}},
                "stages": [{"trials": 4, "epochs": 2}],
                "early_stopping": {"rule": "none"},
            }
        )
        master.service.create_study(spec)
        run_worker(master.url, master.store_root, "t1", max_trials=4)
    sys.path.remove(str(folder))
    yield master
    master.server.stop()


def test_trial_n_is_trial_n_everywhere(two_studies: Master, browser: WebDriver) -> None:
    """The CLI table, the API path, the dashboard URL and heading, the checkpoint
    folder and the log line all name a trial by its number in its study."""
    from typer.testing import CliRunner

    from gridless.master.cli import app

    url = two_studies.url
    listed = httpx.get(f"{url}/api/v1/studies/2/trials").json()["data"]
    trial = listed[0]
    number = trial["number"]
    assert trial["id"] != number  # ids run on across studies; numbers start in each

    status = CliRunner().invoke(app, ["status", "2", "--url", url])
    assert status.exit_code == 0, status.output
    first_row = next(line for line in status.output.splitlines() if line.startswith("│    1 │"))
    assert first_row.split("│")[2].strip() == str(number)

    detail = httpx.get(f"{url}/api/v1/studies/2/trials/{number}").json()
    assert (detail["id"], detail["number"]) == (trial["id"], number)

    open_page(browser, f"{url}/ui/#/studies/2")
    browser.find_element(By.CSS_SELECTOR, "#trials tbody tr").click()
    deadline = time.monotonic() + 10
    heading = "return document.querySelector('h1')?.textContent"  # the page re-renders:
    while browser.execute_script(heading) != f"Trial {number}":  # no stale element
        assert time.monotonic() < deadline, browser.execute_script(heading)
        time.sleep(0.1)
    assert browser.current_url.endswith(f"#/studies/2/trials/{number}")

    folder = f"second/{trial_folder(number)}/"
    assert detail["checkpoints"]
    assert all(c["path"].startswith(folder) for c in detail["checkpoints"])
    assert (Path(two_studies.store_root) / folder).is_dir()
    log = httpx.get(f"{url}/api/v1/studies/2/trials/{number}/log").text
    assert log.startswith(f"=== trial {number}, attempt 0, worker t1, ")

    listed_files = CliRunner().invoke(
        app, ["checkpoints", "ls", "2", "--trial", str(number), "--url", url]
    )
    assert listed_files.exit_code == 0, listed_files.output
    assert folder in listed_files.output
    assert "second/00000" in listed_files.output
    others = [f"second/{trial_folder(n)}/" for n in range(4) if n != number]
    assert not any(o in listed_files.output for o in others)


def test_failed_trials_are_marked_on_the_study_plots(
    failing_study: Master, browser: WebDriver
) -> None:
    trials = httpx.get(f"{failing_study.url}/api/v1/studies/1/trials").json()["data"]
    failed = sum(t["state"] == "failed" for t in trials)
    assert 0 < failed < len(trials)
    browser.get_log("browser")
    open_page(browser, f"{failing_study.url}/ui/#/studies/1")
    assert console_errors(browser) == []
    legend = browser.find_element(By.CSS_SELECTOR, '[data-plot="lr vs val_loss"] .u-legend').text
    assert f"failed or diverged ({failed}, at the worst score)" in legend
    assert dict(browser.execute_script(PAINTED))["lr vs val_loss"] > MIN_PAINTED


@pytest.fixture(scope="module")
def watched_study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    """examples/pytorch/train.py (which calls trial.watch) searched with a learning rate
    about 100x its default: the babysitting of a user's own model, served by a master."""
    import sys

    from gridless.common.spec import parse_spec

    examples = str(Path(__file__).resolve().parents[2] / "examples" / "pytorch")
    data = os.environ.get("EXAMPLE_DATA")
    os.environ["EXAMPLE_DATA"] = str(tmp_path_factory.mktemp("example-data"))
    sys.path.insert(0, examples)
    master = Master(tmp_path_factory.mktemp("dash-watch") / "run", launcher="thread")
    master.server.start()
    spec = parse_spec(
        {
            "name": "watched",
            "train": "train:main",
            "space": {"lr": {"log_uniform": [0.2, 0.4]}},
            "fixed": {"weight_decay": 1e-4, "hidden": 32, "dropout": 0.1},
            "stages": [{"trials": 2, "epochs": 2}],
            "early_stopping": {"rule": "none"},
        }
    )
    master.service.create_study(spec)
    run_worker(master.url, master.store_root, "t1")
    yield master  # the example's folder stays importable: the ensemble hooks live there
    master.server.stop()
    sys.path.remove(examples)
    if data is None:
        os.environ.pop("EXAMPLE_DATA")
    else:
        os.environ["EXAMPLE_DATA"] = data


@pytest.mark.torch
def test_a_watched_user_model_is_plotted_and_warned_like_a_built_in(
    watched_study: Master, browser: WebDriver
) -> None:
    trial = httpx.get(f"{watched_study.url}/api/v1/studies/1/trials").json()["data"][0]
    assert "lr_too_high" in {w["code"] for w in trial["warnings"]}
    browser.get_log("browser")
    open_page(browser, f"{watched_study.url}/ui/#/trials/{trial['id']}")
    assert console_errors(browser) == []
    painted = dict(browser.execute_script(PAINTED))
    for title in (
        "update:weight ratio (want ~1e-3)",
        "activation std per layer",
        "gradient std per layer",
    ):
        assert painted.get(title, 0) > MIN_PAINTED, painted
    legends = " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, ".u-legend"))
    for name in ("conv1.weight", "conv1", "conv2", "fc1"):
        assert name in legends
    assert len(browser.find_elements(By.CSS_SELECTOR, "#first-layer canvas")) == 16
    flags = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".flag")]
    assert any("learning rate too high" in text for text in flags), flags


@pytest.mark.torch
def test_the_ensembles_of_a_user_model_show_its_metric(
    watched_study: Master, browser: WebDriver
) -> None:
    hooks = {"predict": "ensemble_hooks:predict", "evaluate": "ensemble_hooks:evaluate"}
    rows = build_ensembles(watched_study.url, 1, {"k": 2, **hooks})["rows"]
    browser.get_log("browser")
    open_page(browser, f"{watched_study.url}/ui/#/studies/1")
    deadline = time.monotonic() + 10
    while not browser.find_elements(By.CSS_SELECTOR, "#ensemble-table tbody tr"):
        assert time.monotonic() < deadline, "the ensembles panel did not render"
        time.sleep(0.1)
    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#ensemble-table th")]
    assert headers[3:6] == ["val accuracy", "test accuracy", "test gain"]
    cells = browser.find_elements(By.CSS_SELECTOR, "#ensemble-table tbody tr")
    assert len(cells) == len(rows)
    for tr, row in zip(cells, rows, strict=True):
        tds = tr.find_elements(By.TAG_NAME, "td")
        assert tds[1].text == row["name"]
        assert tds[4].text == f"{row['test_score']:.4f}"
    assert console_errors(browser) == []


def test_an_extended_study_shows_its_new_stage_and_compares_its_stages(
    tmp_path_factory: pytest.TempPathFactory, browser: WebDriver
) -> None:
    """A finished study extended by one stage shows it (the API's stages, one
    row each), and the compare page puts its stages side by side."""
    master = Master(tmp_path_factory.mktemp("dash-extend") / "run")
    master.server.start()
    try:
        master.service.create_study(tiny_spec(early_stopping={"rule": "none"}))
        run_worker(master.url, master.store_root, "t1")
        extended = httpx.post(
            f"{master.url}/api/v1/studies/1/stages", json={"stages": [{"trials": 2, "epochs": 1}]}
        )
        assert extended.status_code == 200
        run_worker(master.url, master.store_root, "t1")
        stages = httpx.get(f"{master.url}/api/v1/studies/1").json()["stages"]
        assert len(stages) == 3
        browser.get_log("browser")
        open_page(browser, f"{master.url}/ui/#/studies/1")
        rows = browser.find_elements(By.CSS_SELECTOR, "#stages tbody tr")
        assert len(rows) == 3
        open_page(browser, f"{master.url}/ui/#/compare/1")
        compared = browser.find_elements(By.CSS_SELECTOR, "#compare-1 tbody tr")
        assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in compared] == ["1", "2", "3"]
        assert all(r.find_elements(By.TAG_NAME, "td")[1].text == "done" for r in compared)
        assert console_errors(browser) == []
    finally:
        master.server.stop()
