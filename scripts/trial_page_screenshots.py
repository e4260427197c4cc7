"""Screenshots of the trial pages (docs/dashboard.md, "Trial pages") from a real run.

Runs `gridless run examples/digits.yaml` in a temporary run directory (local Ray
workers), serves it with `gridless master`, and photographs with headless Chromium: the
compare page of the four best trials, the best trial's page, and the checkpoints page
after a click on a row far down the list.

    PYTHONPATH=. python scripts/trial_page_screenshots.py [--out docs/img] [--workers 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.chromium import chromium
from tests.net import free_port

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("screenshots")


def gridless(*args: str) -> list[str]:
    return [sys.executable, "-m", "gridless", *args]


def run_study(run_dir: Path, workers: int, env: dict[str, str]) -> Path:
    """`gridless run examples/digits.yaml`, to its end; the run's folder."""
    command = gridless(
        "run", str(ROOT / "examples" / "digits.yaml"), "--run-dir", str(run_dir),
        "--workers", str(workers), "--ray-cpus", str(workers),
    )  # fmt: skip
    log.info("running %s", " ".join(command))
    started = time.monotonic()
    subprocess.run(command, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    log.info("the study ran in %.0f s", time.monotonic() - started)
    (run,) = [p for p in run_dir.iterdir() if p.is_dir()]
    return run


def browser(width: int, height: int, profile: Path) -> WebDriver:
    return chromium(profile, width=width, height=height, extra=("--hide-scrollbars",))


def open_page(driver: WebDriver, url: str) -> None:
    driver.get("about:blank")
    driver.get(url)
    deadline = time.monotonic() + 30
    while driver.execute_script("return document.body.dataset.ready") != "1":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not finish rendering")
        time.sleep(0.1)
    time.sleep(0.5)  # the plots' resize to their boxes


def shoot(url: str, out: Path, profile: Path) -> None:
    api = f"{url}/api/v1"
    (study,) = httpx.get(f"{api}/studies").json()["data"]
    sid = study["id"]
    best = httpx.get(f"{api}/studies/{sid}/trials?limit=4").json()["data"]
    numbers = ",".join(str(t["number"]) for t in best)
    driver = browser(1280, 900, profile)
    try:
        open_page(driver, f"{url}/ui/#/studies/{sid}/compare-trials/{numbers}")
        driver.save_screenshot(str(out / "dashboard-compare-trials.png"))
        open_page(driver, f"{url}/ui/#/studies/{sid}/trials/{best[0]['number']}")
        driver.save_screenshot(str(out / "dashboard-trial.png"))
        open_page(driver, f"{url}/ui/#/checkpoints/{sid}")
        rows = driver.find_elements(By.CSS_SELECTOR, "#checkpoints tbody tr")
        rows[min(len(rows) - 1, 40)].click()
        deadline = time.monotonic() + 10
        while not driver.find_elements(By.ID, "download"):
            if time.monotonic() > deadline:
                raise TimeoutError("the checkpoint detail did not open")
            time.sleep(0.1)
        driver.save_screenshot(str(out / "dashboard-checkpoints.png"))
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gridless-shots-"))
    try:
        paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
        run = run_study(tmp / "runs", args.workers, env)
        port = free_port()
        master = subprocess.Popen(
            gridless("master", str(run), "--port", str(port)), cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/api/v1/studies", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or master.poll() is not None:
                    raise RuntimeError("gridless master did not come up")
                time.sleep(0.3)
            shoot(url, args.out, tmp / "profile")
        finally:
            master.terminate()
            master.wait(timeout=30)
        for name in ("dashboard-compare-trials", "dashboard-trial", "dashboard-checkpoints"):
            file = args.out / f"{name}.png"
            log.info("%s: %d KB", file, file.stat().st_size // 1024)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
