"""Budget alerts in the admin console, in headless Chromium: a webhook added and a team's
thresholds set from the Alerts page, a crossing delivered to a receiver that keeps failing,
and the page showing each retry and the final failure."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from support.browser import playwright_expect
from support.config import KEYS, auth, base_config
from support.console_page import ConsoleTab
from support.fake_upstream import FakeUpstream
from support.pngs import make_png
from support.servers import GatewayProcess
from support.webhook_receiver import WebhookReceiver

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream) -> GatewayProcess:
    """Team vision with 4 images a day; deliveries tried three times, 0.2 s apart at first."""
    config = base_config(upstream.url)
    config["quotas"] = {"teams": {"vision": [{"unit": "images", "limit": 4, "window": "day"}]}}
    config["notifications"] = {"attempts": 3, "backoff_seconds": 0.2}
    return start_gateway(config)


@pytest.fixture
def tab(browser: Browser, tmp_path: Path, gateway: GatewayProcess) -> Iterator[ConsoleTab]:
    """A console tab signed in with the admin key, checked and closed after the test."""
    opened = ConsoleTab(browser, gateway.url, tmp_path).open()
    opened.sign_in(KEYS["grafana"])
    yield opened
    opened.check()
    opened.close()


def _alerts_for_vision(tab: ConsoleTab, url: str) -> Any:
    """From the Alerts page: a webhook at `url` (its secret shown once), then vision's
    50 % threshold posted to it."""
    expect = playwright_expect()
    page = tab.go("Alerts")
    form = page.locator("#create-webhook")
    form.get_by_label("Name", exact=True).fill("vision leads")
    form.get_by_label("URL", exact=True).fill(url)
    form.get_by_role("button", name="Add webhook").click()
    expect(page.locator(".secret-value")).to_have_value(re.compile(r"^whsec_"))
    alerts = page.locator("#set-alerts")
    alerts.locator("[name=subject]").fill("vision")
    alerts.locator("[name=thresholds]").fill("50")
    alerts.get_by_label("vision leads").check()
    alerts.get_by_role("button", name="Save thresholds").click()
    expect(page.locator("tr[data-subject='team:vision']")).to_contain_text("50 %")
    return page


def test_a_failing_receiver_shows_as_retried_then_failed_in_the_console(
    tab: ConsoleTab, gateway: GatewayProcess
) -> None:
    """From the Alerts page: a webhook (its secret shown once) and vision's 50 % threshold;
    a call crossing it is posted to a receiver that answers 500, and the page lists the
    attempts: retrying, retrying, failed."""
    expect = playwright_expect()
    with WebhookReceiver(status=500) as hooks:
        page = _alerts_for_vision(tab, hooks.url("/vision"))
        answer = httpx.post(
            gateway.url + "/v1/images/variations",
            headers=auth("alice"),
            files={"image": ("a.png", make_png(16), "image/png")},
            data={"n": "2", "size": "256x256"},
            timeout=30,
        )
        assert answer.status_code == 200
        assert len(hooks.wait_for("/vision", 3)) == 3
        for _ in range(50):
            tab.go("Audit")
            page = tab.go("Alerts")
            if page.locator("tr[data-status=failed]").count():
                break
        rows = page.locator("tr[data-status]")
        expect(rows).to_have_count(3)
        statuses = rows.evaluate_all("rs => rs.map(r => r.dataset.status)")
        assert statuses == ["failed", "retrying", "retrying"]
        expect(rows.first).to_contain_text("Team vision has used 50 %")
        expect(rows.first).to_contain_text("500")
        tab.shoot("alerts")
