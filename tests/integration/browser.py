"""A headless Chromium driven by selenium through Debian's ChromeDriver, for the viewer's
page: opened from disk as a user would, its console read for errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.integration.real_parts import CHROMIUM


@contextmanager
def chromium(width: int = 1400, height: int = 1800) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = CHROMIUM
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    """What the page logged as errors (uncaught exceptions included)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
