"""Headless Chromium for the console tests: Debian's `chromium`, driven by Playwright.

Playwright talks to the browser over the DevTools protocol, so it drives the distribution's
own build (`executable_path`); it never downloads one (`playwright install` is not run).
On a laptop without chromium or the playwright package the browser tests skip; with CI
set they fail instead, since .ci/run installs chromium and `make test` the package.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = "/usr/bin/chromium"
# Headless in a container: no sandbox (no user namespaces), no GPU, /tmp instead of a
# small /dev/shm, and none of the browser's own traffic (updates, sync, first-run pages).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing(what: str) -> None:
    """Skip on a laptop; fail in CI, which installs the browser and the package."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI (.ci/run and `make test` install it)")
    pytest.skip(f"{what} not installed")


def chromium_path() -> str:
    """Debian's chromium binary, or skip (fail in CI)."""
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if found is None:
        _missing("chromium")
    assert found is not None
    return found


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    """One headless browser, closed on exit."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package")
        raise
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def playwright_expect() -> Any:
    """Playwright's `expect`, imported when a test runs: the package may be missing (see
    `headless_chromium`, which skips or fails then)."""
    from playwright.sync_api import expect

    return expect
