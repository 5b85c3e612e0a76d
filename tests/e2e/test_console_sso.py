"""The admin console signed in with the company's SSO, in headless Chromium, against a fake
identity provider on loopback: OIDC authorization code with PKCE (the provider checks the
verifier), the admin role from the token's groups, a non-admin refused, an expired session
said and signed in again, and the audit naming the token's issuer and subject."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from support.browser import playwright_expect
from support.config import auth, base_config
from support.console_page import ConsoleTab
from support.fake_idp import FakeIdP
from support.fake_upstream import FakeUpstream
from support.servers import GatewayProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.e2e]
ADMINS = {
    "email": "erin@example.com",
    "sub": "00u-erin",
    "groups": ["grp-vision", "grp-gateway-admins"],
}


@pytest.fixture
def gateway(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, idp: FakeIdP
) -> GatewayProcess:
    """A gateway trusting the IdP's tokens (no leeway on exp), its console signing in there."""
    config = base_config(upstream.url)
    config["identity"] = {"jwt": idp.jwt_config(leeway_seconds=0, console=idp.console_config())}
    return start_gateway(config)


@pytest.fixture
def tab(browser: Browser, gateway: GatewayProcess, tmp_path: Path) -> Iterator[ConsoleTab]:
    """A console tab, checked (no script error, no CSP violation, nothing but console files
    and admin API calls of this gateway) and closed after the test."""
    opened = ConsoleTab(browser, gateway.url, tmp_path).open()
    yield opened
    opened.check()
    opened.close()


def _sso(tab: ConsoleTab) -> None:
    tab.page.get_by_role("button", name="Sign in with company SSO").click()


def test_an_admin_signs_in_with_sso_and_the_audit_names_issuer_and_subject(
    tab: ConsoleTab, idp: FakeIdP, gateway: GatewayProcess
) -> None:
    """One click: the IdP's popup sends the code back, the provider redeems it only with the
    PKCE verifier, and the console opens as the token's user with no key pasted and nothing
    stored; a key created there is audited with the token's issuer and subject."""
    expect = playwright_expect()
    idp.signed_in = ADMINS
    _sso(tab)
    expect(tab.page.locator("#who")).to_have_text("erin@example.com · vision")
    expect(tab.page.locator("#view h2")).to_have_text("Overview")
    assert idp.exchanges == [{"result": "issued"}]
    stored = "[document.cookie, localStorage.length, sessionStorage.length]"
    assert tab.page.evaluate(stored) == ["", 0, 0]
    page = tab.go("Keys")
    form = page.locator("#create-key")
    form.get_by_label("User", exact=True).fill("frank")
    form.get_by_label("Team", exact=True).fill("vision")
    form.get_by_role("button", name="Create key").click()
    expect(page.locator(".secret-value")).to_have_value(re.compile(r"^gwk_"))
    entry = httpx.get(gateway.url + "/admin/audit", headers=auth("grafana")).json()["data"][0]
    assert entry["actor"] == "erin@example.com"
    assert entry["credential"] == {"source": "jwt", "issuer": idp.issuer, "subject": "00u-erin"}
    tab.shoot("sso-signed-in")
    tab.page.get_by_role("button", name="Sign out").click()
    expect(tab.page.locator("#sign-in")).to_be_visible()


def test_a_non_admin_signed_in_with_sso_is_refused(tab: ConsoleTab, idp: FakeIdP) -> None:
    """A person whose token carries no admin group is told they are not an admin."""
    idp.signed_in = {"email": "gus@example.com", "sub": "00u-gus", "groups": ["grp-audio"]}
    _sso(tab)
    expect = playwright_expect()
    expect(tab.page.locator("#refused")).to_contain_text("signed in as gus@example.com")
    expect(tab.page.locator("#nav")).to_be_hidden()


def test_an_expired_sso_session_says_so_and_signs_in_again(tab: ConsoleTab, idp: FakeIdP) -> None:
    """A token that lasts three seconds: the page says the sign-in expired, shows nothing
    more, and one more click on the SSO button signs the admin in again."""
    expect = playwright_expect()
    idp.signed_in, idp.token_seconds = ADMINS, 3
    _sso(tab)
    expect(tab.page.locator("#who")).to_have_text("erin@example.com · vision")
    expect(tab.page.locator("#session-ended")).to_contain_text("expired", timeout=15_000)
    expect(tab.page.locator("#view")).to_be_empty()
    tab.shoot("sso-expired")
    idp.token_seconds = 600
    _sso(tab)
    expect(tab.page.locator("#view h2")).to_have_text("Overview")
    expect(tab.page.locator("#session-ended")).to_be_hidden()
    assert [e["result"] for e in idp.exchanges] == ["issued", "issued"]
