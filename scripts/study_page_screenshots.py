"""Screenshots of the study page for docs/dashboard.md, from a real run of examples/digits.yaml.

Runs `gridless run examples/digits.yaml` (real Ray workers, 70 trials in three stages),
then serves the finished run with `gridless master` and photographs each view of the
study page in headless Chromium: the top of the page, the parallel coordinates (once
plain, once with a brush on learning_rate), the importance bars, the history, the
scatter plots and the trial table. The PNGs go to docs/img/ (or --out); with Pillow
importable (`pip install pillow`; nothing else needs it) they are cut to 256 colours,
about a third of the bytes.

    python scripts/study_page_screenshots.py [--out docs/img] [--workers 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.dashboard_load import open_browser  # noqa: E402
from tests.net import free_port, wait_for_master  # noqa: E402

CLI = [sys.executable, "-m", "gridless.master.cli"]


def run_study(run_dir: Path, workers: int) -> Path:
    """`gridless run examples/digits.yaml`; the run's directory."""
    spec = str(ROOT / "examples" / "digits.yaml")
    options = ["--run-dir", str(run_dir), "--workers", str(workers), "--ray-cpus", str(workers)]
    subprocess.run([*CLI, "run", spec, *options], check=True)
    (run,) = [p for p in run_dir.iterdir() if p.is_dir()]
    return run


def wait_ready(driver: WebDriver) -> None:
    deadline = time.monotonic() + 120
    drawn = "return performance.getEntriesByName('importance-drawn').length"  # the last part
    while driver.execute_script("return document.body.dataset.ready") != "1" or not (
        driver.execute_script(drawn)
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the study page did not render")
        time.sleep(0.1)


def shoot(driver: WebDriver, out: Path) -> list[Path]:
    saved = []

    def save(name: str, selector: str) -> None:
        element = driver.find_element(By.CSS_SELECTOR, selector)
        driver.execute_script(  # below the sticky header
            "window.scrollTo(0, arguments[0].getBoundingClientRect().top + window.scrollY - 60)",
            element,
        )
        path = out / f"study-{name}.png"
        element.screenshot(str(path))
        saved.append(path)

    driver.save_screenshot(str(out / "dashboard-study.png"))  # the top of the page
    saved.append(out / "dashboard-study.png")
    save("parallel", "#parallel")
    save("importance", "#importance")
    save("history", "#history")
    save("scatter", "#scatter")
    # the table as someone uses it: 25 a page, a metric column added, two trials ticked
    Select(driver.find_element(By.ID, "trials-limit")).select_by_value("25")
    time.sleep(1.0)
    driver.find_element(By.CSS_SELECTOR, "#trial-columns summary").click()
    driver.find_element(
        By.CSS_SELECTOR, "#trial-columns input[data-key='metrics.val_loss']"
    ).click()
    driver.find_element(By.CSS_SELECTOR, "#trial-columns summary").click()
    for box in driver.find_elements(By.CSS_SELECTOR, "#trials input.select-trial")[:2]:
        box.click()
    save("table", ".trial-table")
    hit = driver.find_element(By.CSS_SELECTOR, "#parallel .axis-hit[data-param='learning_rate']")
    ActionChains(driver).move_to_element_with_offset(hit, 0, -70).click_and_hold().move_by_offset(
        0, 60
    ).release().perform()
    time.sleep(1.0)
    save("parallel-brushed", "#parallel")
    return saved


def shrink(path: Path) -> None:
    """256 colours, no dithering: the plots' lines and text stay sharp."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gridless-shots-") as scratch:
        run = run_study(Path(scratch), args.workers)
        port = free_port()
        master = subprocess.Popen([*CLI, "master", str(run), "--port", str(port)])
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_master(url)
            with open_browser(width=1100) as driver:
                driver.set_window_size(1100, 900)
                driver.get(f"{url}/ui/#/studies/1")
                wait_ready(driver)
                for path in shoot(driver, args.out):
                    shrink(path)
                    print(f"{path} ({path.stat().st_size // 1000} kB)")  # noqa: T201
        finally:
            master.terminate()
            master.wait(timeout=60)


if __name__ == "__main__":
    main()
