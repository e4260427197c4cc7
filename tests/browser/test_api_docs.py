"""The API docs the master serves itself: Swagger UI at /docs and ReDoc at
/redoc from vendored copies, so an air-gapped cluster sees them too. Over HTTP (no
external host named, the assets served and packaged) and in Debian's headless Chromium
(both render, and every resource the page loads comes from the master)."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.chromium import chromium
from tests.conftest import Master

ROOT = Path(__file__).parents[2]
VENDOR = ROOT / "master" / "static" / "vendor"
ASSETS = {
    "/docs": {
        "/ui/vendor/swagger-ui-bundle.js": "javascript",
        "/ui/vendor/swagger-ui.css": "text/css",
    },
    "/redoc": {"/ui/vendor/redoc.standalone.js": "javascript"},
}


def test_the_docs_pages_name_no_external_host(master: Master) -> None:
    for page, assets in ASSETS.items():
        response = httpx.get(master.url + page)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        html = response.text
        # Every absolute URL in the page (scripts, styles, icons, fonts): none.
        assert re.findall(r"""https?://[^\s"'<>)]+""", html) == []
        assert re.findall(r"""//[a-z0-9.-]+\.[a-z]{2,}/""", html) == []
        linked = set(re.findall(r"""(?:src|href)=["']([^"']+)["']""", html))
        assert linked == {*assets, "data:,"}
        assert "/openapi.json" in html


def test_the_vendored_assets_are_served_as_they_are_stored(master: Master) -> None:
    for assets in ASSETS.values():
        for path, kind in assets.items():
            response = httpx.get(master.url + path)
            assert response.status_code == 200, path
            assert kind in response.headers["content-type"], path
            stored = (VENDOR / path.rsplit("/", 1)[1]).read_bytes()
            assert hashlib.sha256(response.content).digest() == hashlib.sha256(stored).digest()


def test_the_vendored_files_are_packaged_with_their_licenses() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = pyproject["tool"]["setuptools"]
    assert "gridless.master.static.vendor" in setuptools["packages"]  # a data package
    patterns = setuptools["package-data"]["gridless.master.static.vendor"]
    readme = (VENDOR / "README").read_text(encoding="utf-8")
    for name, licence, line in [
        ("swagger-ui-bundle.js", "swagger-ui.LICENSE", "swagger-ui-dist 5.35.0"),
        ("swagger-ui.css", "swagger-ui.LICENSE", "swagger-ui-dist 5.35.0"),
        ("redoc.standalone.js", "redoc.LICENSE", "redoc 2.5.4"),
    ]:
        for file in (name, licence):
            assert (VENDOR / file).is_file(), file
            assert any(fnmatch.fnmatch(file, p) for p in patterns), file
        assert line in readme
    # redoc's one change (its logo came from a CDN) is recorded with the file's hash.
    patched = hashlib.sha256((VENDOR / "redoc.standalone.js").read_bytes()).hexdigest()
    assert f"here {patched}" in readme
    assert b"cdn.redoc.ly" not in (VENDOR / "redoc.standalone.js").read_bytes()


# -- in a real browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    master = Master(tmp_path_factory.mktemp("docs") / "run")
    master.server.start()
    yield master
    master.server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    driver = chromium(tmp_path_factory.mktemp("profile"))
    yield driver
    driver.quit()


def wait_for(driver: WebDriver, script: str, what: str, timeout_s: float = 60) -> object:
    deadline = time.monotonic() + timeout_s
    while not (value := driver.execute_script(script)):
        assert time.monotonic() < deadline, f"{what} did not appear"
        time.sleep(0.2)
    return value


LOADED = "return performance.getEntriesByType('resource').map(e => e.name)"


def only_from(master: Master, urls: list[str]) -> list[str]:
    """The URLs of `urls` that are neither the master's nor data:/blob: ones."""
    return [u for u in urls if not u.startswith((master.url + "/", "data:", "blob:"))]


@pytest.mark.browser
def test_swagger_ui_renders_every_operation(served: Master, browser: WebDriver) -> None:
    schema = httpx.get(served.url + "/openapi.json").json()
    operations = sum(len(ops) for ops in schema["paths"].values())
    browser.get(served.url + "/docs")
    count = wait_for(
        browser,
        f"const n = document.querySelectorAll('.opblock').length; return n >= {operations} && n",
        "Swagger UI's operation blocks",
    )
    assert count == operations
    summaries = browser.execute_script(
        "return [...document.querySelectorAll('.opblock-summary-path')].map(e => e.innerText)"
    )
    assert "/api/v1/studies/{study_id}/points" in {s.replace("\u200b", "") for s in summaries}
    assert only_from(served, browser.execute_script(LOADED)) == []
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


@pytest.mark.browser
def test_redoc_renders_the_api(served: Master, browser: WebDriver) -> None:
    browser.get(served.url + "/redoc")
    wait_for(
        browser,
        "return document.querySelectorAll('[id*=\"operation/\"]').length > 0",
        "ReDoc's operations",
    )
    text = browser.execute_script("return document.body.innerText")
    assert "gridless master" in text
    assert "Read Points" in text  # an operation's summary
    assert only_from(served, browser.execute_script(LOADED)) == []
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
