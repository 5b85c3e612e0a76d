"""The admin console in a browser tab, as a person uses it: sign in, click, read, download.

It also watches the tab: every request it makes (each must be a console file or an admin
API call to the gateway itself), every uncaught script error, and every Content-Security-
Policy violation the browser reports; `check()` fails the test on any of them.
"""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request

CONSOLE_FILES = {
    "/admin/console",
    "/admin/console/console.js",
    "/admin/console/console.css",
    "/admin/console/chart.js",
    "/admin/console/models.js",
    "/admin/console/sso",
}
# What the page may ask the gateway: the admin API, and the caller's own /v1/quota.
API_CALLS = [
    ("GET", "/v1/quota"),
    ("GET", "/admin/quotas"),
    ("GET", "/admin/keys"),
    ("POST", "/admin/keys"),
    ("DELETE", "/admin/keys/*"),
    ("POST", "/admin/keys/*/rotate"),
    ("PUT", "/admin/quotas/users/*"),
    ("DELETE", "/admin/quotas/users/*"),
    ("PUT", "/admin/quotas/teams/*"),
    ("DELETE", "/admin/quotas/teams/*"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/usage"),
    ("POST", "/admin/console/sso/token"),
    ("GET", "/admin/webhooks"),
    ("POST", "/admin/webhooks"),
    ("POST", "/admin/webhooks/*/test"),
    ("DELETE", "/admin/webhooks/*"),
    ("GET", "/admin/alerts"),
    ("PUT", "/admin/alerts/teams/*"),
    ("PUT", "/admin/alerts/users/*"),
    ("GET", "/admin/deliveries"),
    ("GET", "/admin/models"),
    ("PUT", "/admin/models/lists/*"),
    ("DELETE", "/admin/models/lists/*"),
    ("PUT", "/admin/models/prices/*"),
    ("DELETE", "/admin/models/prices/*"),
]
VIEWPORT = {"width": 1360, "height": 860}
ACTION_SECONDS = 10  # the longest a click or a wait may take before the test fails


class ConsoleTab:
    """One browser context (its own memory, no shared cookies) with the console open."""

    def __init__(
        self,
        browser: Browser,
        gateway_url: str,
        shots: Path,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base, self.shots = gateway_url, shots
        self.context: BrowserContext = browser.new_context(
            viewport=VIEWPORT,  # type: ignore[arg-type]
            accept_downloads=True,
            extra_http_headers=headers or {},
        )
        self.context.set_default_timeout(ACTION_SECONDS * 1000)
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway_url)
        self.page: Page = self.context.new_page()
        self.requests: list[tuple[str, str]] = []
        self.problems: list[str] = []
        self.page.on("request", self._request)
        self.page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        self.page.on("console", self._console)

    def _request(self, request: Request) -> None:
        self.requests.append((request.method, request.url))

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.problems.append(f"CSP: {message.text}")

    def open(self) -> ConsoleTab:
        """Load /admin/console and wait until it has decided who is there."""
        self.page.goto(self.base + "/admin/console")
        self.page.wait_for_selector("#loading", state="hidden")
        return self

    def sign_in(self, credential: str) -> None:
        """Paste a key or token into the sign-in form and submit it."""
        self.page.fill("#credential", credential)
        self.page.get_by_role("button", name="Sign in").click()

    def go(self, name: str) -> Page:
        """Open a page of the console from its navigation bar."""
        self.page.locator("#nav").get_by_role("link", name=name).click()
        self.page.wait_for_selector(f"#view h2:text-is('{name}')")
        return self.page

    def shoot(self, name: str, copy_to: str | None = None) -> Path:
        """A full-page screenshot into the test's directory (and a copy where asked)."""
        path = self.shots / f"console-{name}.png"
        # Down to the end of the content, not of the window: no empty band below.
        bottom = self.page.evaluate("Math.ceil(document.body.getBoundingClientRect().bottom)")
        clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": bottom}
        self.page.screenshot(path=path, full_page=True, clip=clip)  # type: ignore[arg-type]
        if copy_to:
            shutil.copyfile(path, copy_to)
        return path

    def check(self) -> None:
        """No script error, no CSP violation, and nothing asked but console files and the
        admin API of this gateway."""
        assert self.problems == []
        origin = urlsplit(self.base)
        for method, url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("blob", "data"):
                continue  # the CSV download and the empty favicon, made in the page
            assert (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc), url
            allowed = (method == "GET" and parts.path in CONSOLE_FILES) or any(
                method == m and fnmatch.fnmatchcase(parts.path, p) for m, p in API_CALLS
            )
            assert allowed, f"{method} {url}"

    def close(self) -> None:
        self.context.close()
