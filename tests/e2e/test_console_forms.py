"""The console's forms and tables as an admin reads them in headless Chromium: the Rotate
dialog's default grace and what it says of 0, refusals in the form's words, the Usage
headings, the Audit filters after a bad time, long names in the Keys table at 1366 px, and
a quota override for a name with `/`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from support.browser import playwright_expect
from support.config import KEYS, auth, base_config
from support.console_page import ConsoleTab
from support.fake_upstream import FakeUpstream
from support.servers import GatewayProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
ADMIN = auth("grafana")


@pytest.fixture
def gateway(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> GatewayProcess:
    """A gateway on Redis with a daily image rule for everyone."""
    config = base_config(upstream.url)
    config["quotas"] = {"default": [{"unit": "images", "limit": 4, "window": "day"}]}
    return start_gateway(config, {"REDIS_URL": clean_redis})


@pytest.fixture
def tab(browser: Browser, gateway: GatewayProcess, tmp_path: Path) -> Iterator[ConsoleTab]:
    """A console tab signed in with the admin key; checked (no script error, no CSP
    violation, only console files and admin API calls) and closed after the test."""
    opened = ConsoleTab(browser, gateway.url, tmp_path).open()
    opened.sign_in(KEYS["grafana"])
    playwright_expect()(opened.page.locator("#who")).to_contain_text("grafana")
    yield opened
    opened.check()
    opened.close()


def _make_key(gateway: GatewayProcess, **body: Any) -> dict[str, Any]:
    made = httpx.post(
        gateway.url + "/admin/keys", json={"team": "vision", **body}, headers=ADMIN, timeout=5
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def _top(page: Page, selector: str) -> float:
    box = page.locator(selector).bounding_box()
    assert box is not None
    return float(box["y"])


def test_the_rotate_dialog_offers_a_grace_and_says_what_0_means(
    tab: ConsoleTab, gateway: GatewayProcess
) -> None:
    """Rotate opens with 300 s of grace, says that 0 cuts every caller off at once, and its
    button is not styled as destructive (Revoke's is); confirmed as offered, the old secret
    keeps working for about 300 s."""
    expect = playwright_expect()
    made = _make_key(gateway, user="dave")
    page = tab.go("Keys")
    row = page.locator("tbody tr", has_text="dave")
    row.get_by_role("button", name="Revoke").click()
    assert page.locator("#confirm-ok").get_attribute("class") == "danger"
    page.locator("#confirm-cancel").click()

    row.get_by_role("button", name="Rotate").click()
    dialog = page.locator("#confirm")
    expect(dialog.get_by_label("Grace seconds")).to_have_value("300")
    expect(dialog).to_contain_text("0 stops the old secret at once")
    assert "danger" not in (page.locator("#confirm-ok").get_attribute("class") or "")
    tab.shoot("rotate-dialog")
    page.locator("#confirm-ok").click()
    expect(page.locator(".secret h3")).to_contain_text("Rotated key for dave")
    old = httpx.get(
        gateway.url + "/v1/quota", headers={"Authorization": f"Bearer {made['key']}"}, timeout=5
    )
    assert old.status_code == 200  # the grace: callers still on the old secret get through
    listed = httpx.get(gateway.url + "/admin/keys", headers=ADMIN, timeout=5).json()["data"]
    until = datetime.fromisoformat(listed[0]["previous_key_expires_at"]).timestamp()
    assert 280 <= until - time.time() <= 300


def test_refusals_read_in_the_forms_words(tab: ConsoleTab) -> None:
    """An expiry typed as an epoch number is refused under its field saying what to type,
    without the API's field path or error code."""
    expect = playwright_expect()
    page = tab.go("Keys")
    form = page.locator("#create-key")
    form.get_by_label("User", exact=True).fill("dave")
    form.get_by_label("Team", exact=True).fill("vision")
    form.locator("[name=expires_at]").fill("4102444800")
    form.get_by_role("button", name="Create key").click()
    error = form.locator("[data-param=expires_at] .field-error")
    expect(error).to_contain_text("Type a date and time to come, like 2027-01-01T00:00:00Z")
    expect(error).not_to_contain_text("invalid_value")
    expect(error).not_to_contain_text("expires_at")


def test_usage_columns_are_headed_by_labels(tab: ConsoleTab) -> None:
    """The Usage tables' headings are words, as on the other pages, not field names."""
    page = tab.go("Usage")
    headings = page.locator("section[data-by=user] thead th").all_inner_texts()
    assert headings == ["Team", "User", "Requests", "Images", "Spend (USD)", "Cache hits"]


def test_a_bad_since_on_audit_moves_no_filter_and_clears_the_rows(
    tab: ConsoleTab, gateway: GatewayProcess
) -> None:
    """A time the API refuses is said under "Since"; the other filters and the button stay
    where they were, and the last filter's rows are cleared, not left as this one's answer;
    fixed, the entries come back."""
    expect = playwright_expect()
    _make_key(gateway, user="dave")
    page = tab.go("Audit")
    expect(page.locator("tbody tr")).to_have_count(1)
    actor, button = "[name=actor]", "form.filters > button"
    before = (_top(page, actor), _top(page, button))
    page.locator("[name=since]").fill("yesterday")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("[data-param=since] .field-error")).to_contain_text("Type a date")
    assert (_top(page, actor), _top(page, button)) == before
    expect(page.locator("tbody tr")).to_have_count(0)
    tab.shoot("audit-refused")
    page.locator("[name=since]").fill("2000-01-01T00:00:00Z")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)


def test_the_keys_table_fits_a_1366_px_window_with_long_names(
    tab: ConsoleTab, gateway: GatewayProcess
) -> None:
    """Keys for 200-character user names with 200-character notes: the table wraps them
    and stays inside a 1366-px window (no sideways scrolling)."""
    for i in range(3):
        _make_key(gateway, user=f"{i}" + "u" * 199, note="n" * 200)
    tab.page.set_viewport_size({"width": 1366, "height": 768})
    page = tab.go("Keys")
    playwright_expect()(page.locator("tbody tr")).to_have_count(3)
    tab.shoot("keys-long-names")
    right = page.evaluate("document.querySelector('table').getBoundingClientRect().right")
    assert right <= 1366
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366


def test_a_quota_override_for_a_name_with_a_slash_is_saved_from_the_console(
    tab: ConsoleTab, gateway: GatewayProcess
) -> None:
    """An SSO subject with `/` and `%` gets its runtime override through the Quotas page."""
    expect = playwright_expect()
    name = "okta/00u1%ab"
    page = tab.go("Quotas")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#overrides")).to_contain_text(f"Runtime overrides of user {name}")
    page.locator("#overrides [name=unit]").select_option("images")
    page.locator("#overrides [name=limit]").fill("7")
    page.get_by_role("button", name="Save overrides").click()
    expect(page.locator(".status.ok")).to_contain_text("Saved")
    overrides = httpx.get(gateway.url + "/admin/quotas", headers=ADMIN, timeout=5).json()
    assert [(o["subject"], o["rules"][0]["limit"]) for o in overrides["overrides"]] == [(name, 7)]
