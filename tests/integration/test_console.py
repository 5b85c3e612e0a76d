"""The admin console's static shell, in-process and without a browser: what it serves, under
which headers, and that it holds no data and no inline code (the browser tests drive it:
tests/e2e/test_console_browser.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from support.requests import assert_openai_error

import gateway

CONSOLE_DIR = Path(gateway.__file__).parent / "console"
FILES = [
    ("/admin/console", "text/html; charset=utf-8"),
    ("/admin/console/console.js", "text/javascript; charset=utf-8"),
    ("/admin/console/models.js", "text/javascript; charset=utf-8"),
    ("/admin/console/console.css", "text/css; charset=utf-8"),
    ("/admin/console/chart.js", "text/javascript; charset=utf-8"),
]
POLICY = {
    "default-src": ["'none'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "connect-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'none'"],
}


def _policy(header: str) -> dict[str, list[str]]:
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {name: values for name, *values in directives}


@pytest.mark.parametrize(("path", "content_type"), FILES)
def test_console_files_load_without_credentials_with_their_content_type(
    client: TestClient, path: str, content_type: str
) -> None:
    """The shell and its assets need no key (they hold no data), each under its own type."""
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(("path", "content_type"), FILES)
def test_every_console_file_carries_the_strict_content_security_policy(
    client: TestClient, path: str, content_type: str
) -> None:
    """Only this origin's files run and only this origin is called; nothing inline, no
    framing, no form posts, no <base> rewriting; no referrer leaves the page."""
    headers = client.get(path).headers
    assert _policy(headers["content-security-policy"]) == POLICY
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    "path",
    ["/admin/console/", "/admin/console/index.html", "/admin/console/app.py",
     "/admin/console/..%2fapp.py", "/admin/console/console.js.map"],
)  # fmt: skip
def test_nothing_else_is_served_under_the_console(client: TestClient, path: str) -> None:
    """Only the console's files exist: anything else under it is an OpenAI-shaped 404."""
    assert_openai_error(client.get(path), 404, "not_found")


def test_the_shell_holds_no_data(client: TestClient) -> None:
    """The page served without credentials names no principal, team or key: all data
    comes later, from the admin API, with the admin's credential."""
    response = client.get("/admin/console")
    assert response.status_code == 200
    page = response.text
    for name in ("alice", "grafana", "vision", "ops", "key_"):
        assert name not in page


class _Markup(HTMLParser):
    """Collects what could run or style the page from inside the HTML itself."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        self.inline += [f"{tag} {n}" for n in names if n.startswith("on") or n == "style"]
        if tag == "style" or (tag == "script" and "src" not in names):
            self.inline.append(tag)
        self.urls += [v or "" for n, v in attrs if n in ("src", "href")]
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(f"script body {data.strip()[:40]}")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def test_the_page_has_no_inline_script_or_style_and_no_third_party_asset(
    client: TestClient,
) -> None:
    """No <script> body, <style>, style= or on*= attribute; every URL is this origin's
    (relative) or a data: icon, so the page works offline and under the policy."""
    markup = _Markup()
    markup.feed(client.get("/admin/console").text)
    assert markup.inline == []
    assert markup.urls
    for url in markup.urls:
        assert url.startswith(("#", "data:")) or not re.match(r"^([a-z]+:|//|/)", url), url


def test_the_script_talks_to_the_gateway_through_one_call_to_the_admin_api() -> None:
    """The scripts have one fetch (console.js's admin API helper, which models.js uses
    too), no other way out (XHR, sockets, beacons, workers, eval), no storage of any kind,
    and call only admin/ and v1/quota."""
    source = "\n".join(
        (CONSOLE_DIR / name).read_text(encoding="utf-8") for name in ("console.js", "models.js")
    )
    script = re.sub(r"^\s*//.*$", "", source, flags=re.MULTILINE)  # code, not its comments
    assert script.count("fetch(") == 1
    for banned in ("XMLHttpRequest", "WebSocket", "EventSource", "sendBeacon", "Worker(",
                   "eval(", "new Function", "innerHTML", "outerHTML", "insertAdjacentHTML",
                   "document.write", "localStorage", "sessionStorage", "indexedDB",
                   "document.cookie"):  # fmt: skip
        assert banned not in script, banned
    paths = re.findall(r"""api\("(?:GET|POST|PUT|DELETE)", [`"]([^`"]+)""", script)
    assert paths
    assert all(p.startswith(("admin/", "v1/quota")) for p in paths), paths
