"""The console's Models page in headless Chromium against a live gateway on a real Redis, in
front of a fake OpenAI: an admin sees the models and their shutdown date, prices a new model,
puts it first, and the openai SDK's next call is served by it; a bad list is refused next
to its field and changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import openai
import pytest
from support.browser import playwright_expect
from support.config import EDITS_PRICE, KEYS, auth, base_config, edits_upstream
from support.console_page import ConsoleTab
from support.fake_upstream import FakeUpstream, Reply, edits_response, model_entry
from support.pngs import make_png
from support.servers import GatewayProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),  # create_variation
]


@pytest.fixture
def gateway(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> GatewayProcess:
    """The edits adapter with one model, cm-a, whose shutdown the upstream announces."""
    upstream.script = lambda received: Reply(body=edits_response(received))
    upstream.models = [model_entry("cm-a", "2027-01-15"), model_entry("cm-b")]
    section = edits_upstream(upstream.url)
    section["edits"] = {"models": ["cm-a"], "prices": {"cm-a": EDITS_PRICE}}
    config = {**base_config(upstream.url), "upstream": {**section, "watch_seconds": 1}}
    return start_gateway(config, {"REDIS_URL": clean_redis})


def _model_of_next_call(gateway: GatewayProcess) -> str:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS["alice"], max_retries=0) as sdk:
        raw = sdk.images.with_raw_response.create_variation(image=make_png(16))
        return raw.headers["x-gateway-upstream-model"]


def _read(tab: ConsoleTab) -> None:
    """Reload the Models page once the watch has read /models."""
    deadline = time.monotonic() + 10
    while "not read yet" in tab.page.locator("#watch").inner_text():
        assert time.monotonic() < deadline, "the watch never read /models"
        time.sleep(0.2)
        tab.page.reload()
        tab.page.wait_for_selector("#watch")


def test_an_admin_prices_a_model_puts_it_first_and_the_sdk_follows(
    browser: Browser, gateway: GatewayProcess, tmp_path: Path
) -> None:
    """The page shows cm-a serving, with its shutdown date; cm-b priced and put first there
    serves the next SDK call; the list says runtime; the audit has both changes."""
    expect = playwright_expect()
    tab = ConsoleTab(browser, gateway.url, tmp_path).open()
    try:
        tab.sign_in(KEYS["grafana"])
        page = tab.go("Models")
        _read(tab)
        expect(page.locator("#list-edits")).to_contain_text("Serving now: cm-a.")
        expect(page.locator("tr[data-model='cm-a']")).to_contain_text("2027-01-15")

        refused = page.locator("#list-edits")
        refused.locator("input[name=models]").fill("cm-b cm-a")
        refused.get_by_role("button", name="Save list").click()
        error = refused.locator("[data-param=models] .field-error")
        expect(error).to_contain_text("cm-b has no price")
        expect(error).not_to_contain_text("unpriced_model")  # the form's words, no code

        new_price = page.get_by_role("form", name="price another model")
        new_price.get_by_label("Model").fill("cm-b")
        new_price.locator("textarea").fill(json.dumps(EDITS_PRICE))
        new_price.get_by_role("button", name="Save price").click()
        expect(page.locator(".status.ok")).to_contain_text("the price of cm-b is in force")

        form = page.locator("#list-edits")
        form.locator("input[name=models]").fill("cm-b cm-a")
        form.get_by_role("button", name="Save list").click()
        expect(page.locator(".status.ok")).to_contain_text("the list is in force")
        expect(page.locator("#list-edits")).to_contain_text("Serving now: cm-b.")
        expect(page.locator("#list-edits .tag")).to_have_text("runtime")
        tab.shoot("models")
        assert _model_of_next_call(gateway) == "cm-b"
        audit = httpx.get(gateway.url + "/admin/audit", headers=auth("grafana"), timeout=5)
        actions = [entry["action"] for entry in audit.json()["data"]]
        assert actions == ["models.set", "model_price.set"]
        tab.check()
    finally:
        tab.close()
