"""A real headless Chromium for end-to-end tests, driven by Selenium through the system's
chromedriver: explicit paths only, so Selenium Manager never looks for (or downloads) a
browser or a driver. Always quit, whatever the test did.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from tests.e2e.servers import REPO_ROOT, require_binary

WINDOW_WIDTH, WINDOW_HEIGHT = 1400, 1000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_SCREENSHOT_BYTES = 8_000
"""Smaller than any screenshot of a rendered page at the window size: a blank or broken
capture is a few hundred bytes."""


def artifact_dir() -> Path:
    """Where tests leave files for people to look at: ``OTELKIT_ARTIFACT_DIR``, else
    ``<repo>/test-artifacts``."""
    configured = os.environ.get("OTELKIT_ARTIFACT_DIR")
    directory = Path(configured) if configured else REPO_ROOT / "test-artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def chrome_options(*, scripts: bool = True) -> Options:
    """Headless Chromium at a fixed window size, logging the page's console; ``scripts=False``
    turns JavaScript off for every page, as a user's content setting would."""
    options = Options()
    options.binary_location = require_binary("chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={WINDOW_WIDTH},{WINDOW_HEIGHT}",
    ):
        options.add_argument(argument)
    if not scripts:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@contextlib.contextmanager
def running_browser(log_dir: Path, *, scripts: bool = True) -> Iterator[webdriver.Chrome]:
    """A headless Chromium session (chromedriver's log in ``log_dir``); quit on exit."""
    service = Service(
        executable_path=require_binary("chromedriver"),
        log_output=str(log_dir / "chromedriver.log"),
    )
    driver = webdriver.Chrome(service=service, options=chrome_options(scripts=scripts))
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(10)
        yield driver
    finally:
        driver.quit()


def console_errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The page's SEVERE console entries since the last call (CSP violations, uncaught
    exceptions, failed loads), except a missing ``/favicon.ico``."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [
        entry
        for entry in entries
        if entry.get("level") == "SEVERE" and "favicon.ico" not in str(entry.get("message"))
    ]


def save_screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save the window as ``<artifact dir>/<name>.png``; fail unless it is a real PNG."""
    path = artifact_dir() / f"{name}.png"
    if not driver.save_screenshot(str(path)):
        pytest.fail(f"the browser could not save a screenshot to {path}")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    assert len(data) > MIN_SCREENSHOT_BYTES, f"{path} is only {len(data)} bytes"
    return path
