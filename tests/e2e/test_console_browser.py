"""The admin console in headless Chromium against a live gateway on a real Redis: an admin
signs in, issues and revokes a key the openai SDK uses, raises a quota, downloads the
month's usage; a non-admin is refused. Screenshots of each page land in the test's tmp dir.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import openai
import pytest
from support.browser import playwright_expect
from support.callers import SdkSize
from support.config import KEYS, auth, base_config
from support.console_page import ConsoleTab
from support.fake_idp import FakeIdP, SigningKey
from support.fake_upstream import FakeUpstream
from support.pngs import make_png
from support.polling import becomes
from support.servers import GatewayProcess

from gateway.quota.books import to_csv
from gateway.settings.config import DALL_E_2_PRICES

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),  # create_variation
]
# Set to a file (docs/console-overview.png) to refresh the README's picture of the overview.
README_PICTURE = os.environ.get("CONSOLE_README_PICTURE")
PROXY_HEADERS = {"X-Forwarded-User": "root", "X-Forwarded-Team": "ops"}


@pytest.fixture
def gateway(
    start_gateway: Callable[..., GatewayProcess],
    upstream: FakeUpstream,
    idp: FakeIdP,
    clean_redis: str,
) -> GatewayProcess:
    """A gateway on Redis with per-user and team rules, the cache on, the company IdP's
    tokens accepted, and a sign-in proxy trusted on loopback (its headers count only when
    a test sends them)."""
    config = base_config(upstream.url)
    config["quotas"] = {
        "default": [
            {"unit": "images", "limit": 4, "window": "day"},
            {"unit": "requests", "limit": 30, "window": "hour"},
        ],
        "teams": {
            "vision": [{"unit": "usd", "limit": 0.1, "window": "month"}],
            "audio": [{"unit": "images", "limit": 40, "window": "day"}],
        },
    }
    config["cache"] = {"enabled": True}
    config["identity"] = {
        "jwt": idp.jwt_config(),
        "trusted_header": {
            "user_header": "X-Forwarded-User",
            "team_header": "X-Forwarded-Team",
            "role_header": "X-Forwarded-Groups",
            "admin_values": ["gw-admins"],
            "proxies": ["127.0.0.1/32"],
        },
    }
    return start_gateway(config, {"REDIS_URL": clean_redis})


@pytest.fixture
def tabs(browser: Browser, gateway: GatewayProcess, tmp_path: Path) -> Iterator[Any]:
    """Opens console tabs on the gateway; each is checked (no script error, no CSP
    violation, nothing but console files and admin API calls) and closed after the test."""
    opened: list[ConsoleTab] = []

    def open_tab(headers: dict[str, str] | None = None) -> ConsoleTab:
        opened.append(ConsoleTab(browser, gateway.url, tmp_path, headers).open())
        return opened[-1]

    yield open_tab
    for tab in opened:
        tab.check()
        tab.close()


def _sdk(gateway: GatewayProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def _variation(client: openai.OpenAI, png: bytes, n: int = 1, size: SdkSize = "256x256") -> Any:
    """One create_variation call; its raw answer (headers and parsed body)."""
    return client.images.with_raw_response.create_variation(
        image=("in.png", png, "image/png"), n=n, size=size, response_format="b64_json"
    )


def _status(gateway: GatewayProcess, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.get(gateway.url + "/v1/quota", headers=headers, timeout=5).status_code


def test_an_admin_issues_a_key_the_sdk_uses_and_revokes_it(
    tabs: Callable[..., ConsoleTab], gateway: GatewayProcess
) -> None:
    """Signed in with an admin key, the Keys page issues a key (shown once, copyable) that
    the openai SDK can use; rotated there, only the new secret works; revoked there, the
    SDK is refused; the Audit page lists the three actions, newest first, and filters them."""
    expect = playwright_expect()
    tab = tabs()
    tab.sign_in(KEYS["grafana"])
    expect(tab.page.locator("#who")).to_have_text("grafana · ops")
    page = tab.go("Keys")
    form = page.locator("#create-key")
    form.get_by_label("User", exact=True).fill("dave")
    form.get_by_label("Team", exact=True).fill("vision")
    form.get_by_label("Note", exact=True).fill("launch")
    form.get_by_role("button", name="Create key").click()
    secret_box = page.locator(".secret-value")
    expect(secret_box).to_have_value(re.compile(r"^gwk_\S{43}$"))
    secret = secret_box.input_value()
    expect(page.locator(".secret .warning")).to_contain_text("shown this once")
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.locator(".copied")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    tab.shoot("keys-new-secret")

    assert len(_variation(_sdk(gateway, secret), make_png(16)).parse().data) == 1

    page.get_by_role("button", name="I have stored it: hide").click()
    row = page.locator("tbody tr", has_text="dave")
    expect(row).to_contain_text("active")
    assert secret not in page.content()  # shown once: gone from the page once hidden
    row.get_by_role("button", name="Rotate").click()
    page.locator("#confirm").get_by_label("Grace seconds").fill("0")
    page.locator("#confirm-ok").click()
    expect(page.locator(".secret h3")).to_contain_text("Rotated key for dave")
    rotated = page.locator(".secret-value").input_value()
    assert rotated.startswith("gwk_") and rotated != secret
    assert becomes(lambda: _status(gateway, secret) == 401)
    client = _sdk(gateway, rotated)
    assert len(_variation(client, make_png(16)).parse().data) == 1

    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("#confirm")).to_contain_text("Revoke key_")
    page.locator("#confirm-ok").click()
    expect(page.locator("tbody tr", has_text="dave")).to_contain_text("revoked")
    tab.shoot("keys")
    assert becomes(lambda: _status(gateway, rotated) == 401)
    with pytest.raises(openai.AuthenticationError):
        _variation(client, make_png(16))

    page = tab.go("Audit")
    actions = page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.action)")
    assert actions == ["key.revoke", "key.rotate", "key.create"]
    page.get_by_label("Action").select_option("key.create")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text("grafana")
    expect(page.locator("tbody tr")).to_contain_text("config key")  # the credential that acted
    tab.shoot("audit")


def test_a_quota_raised_in_the_console_admits_the_refused_caller(
    tabs: Callable[..., ConsoleTab], gateway: GatewayProcess
) -> None:
    """alice's 4 images a day are spent and the SDK is refused; a bad limit typed in the
    Quotas page is refused next to its field and changes nothing; 6 saved there admits her."""
    expect = playwright_expect()
    alice = _sdk(gateway, KEYS["alice"])
    assert len(_variation(alice, make_png(16), n=4).parse().data) == 4
    with pytest.raises(openai.RateLimitError):
        _variation(alice, make_png(20))

    tab = tabs()
    tab.sign_in(KEYS["grafana"])
    page = tab.go("Overview")
    alice_images = page.locator("tbody tr", has_text="alice").filter(has_text="images")
    alice_images.get_by_role("link").click()
    expect(page.locator("#overrides")).to_contain_text("Runtime overrides of user alice")
    rules = page.locator("table").first
    expect(rules.locator("tr", has_text="images")).to_contain_text("config")

    limit = page.locator("#overrides [data-param='rules.0.limit']")
    page.locator("#overrides [name=unit]").select_option("images")
    limit.locator("input").fill("-6")
    page.get_by_role("button", name="Save overrides").click()
    expect(limit.locator(".field-error")).to_have_text("Type a number, 0 or more.")
    tab.shoot("quotas-refused")
    audit = httpx.get(gateway.url + "/admin/audit", headers=auth("grafana"), timeout=5)
    assert audit.json()["data"] == []  # refused: nothing changed, nothing audited

    limit.locator("input").fill("6")
    page.get_by_role("button", name="Save overrides").click()
    expect(page.locator(".status.ok")).to_contain_text("Saved")
    expect(page.locator("table").first.locator("tr", has_text="images")).to_contain_text("runtime")
    tab.shoot("quotas")
    assert becomes(lambda: _variation_admitted(alice))


def _variation_admitted(client: openai.OpenAI) -> bool:
    try:
        _variation(client, make_png(20))
    except openai.RateLimitError:
        return False
    return True


# (caller, image side, n, size): the two repeats are answered from the cache.
TRAFFIC: list[tuple[str, int, int, SdkSize]] = [
    ("alice", 16, 2, "256x256"),
    ("alice", 16, 2, "256x256"),
    ("bob", 24, 1, "512x512"),
    ("bob", 16, 2, "256x256"),
    ("bob", 28, 2, "1024x1024"),
    ("carol", 32, 3, "1024x1024"),
]


def _send_traffic(gateway: GatewayProcess) -> dict[str, Counter[str]]:
    """TRAFFIC through the SDK; per caller what they got and what the company paid for."""
    got: dict[str, Counter[str]] = {}
    for user, side, n, size in TRAFFIC:
        raw = _variation(_sdk(gateway, KEYS[user]), make_png(side), n=n, size=size)
        images = len(raw.parse().data)
        hit = raw.headers["x-gateway-cache"] == "HIT"
        tally = got.setdefault(user, Counter())
        tally.update(requests=1, cache_hits=int(hit), images=0 if hit else images)
        tally["usd_micros"] += 0 if hit else images * round(DALL_E_2_PRICES[size] * 1e6)
    return got


def _download(page: Any, by: str) -> tuple[str, str]:
    """Click the Download CSV button of a usage table; the file's name and text."""
    with page.expect_download() as info:
        page.locator(f"section[data-by={by}]").get_by_role("button", name="Download CSV").click()
    download = info.value
    return download.suggested_filename, Path(download.path()).read_text(encoding="utf-8")


def test_the_month_csv_adds_up_to_what_the_callers_received(
    tabs: Callable[..., ConsoleTab], gateway: GatewayProcess
) -> None:
    """After SDK traffic (misses and cache hits), the Usage page's CSV files say what each
    caller got: requests, images and usd the company paid for, and cache hits; they are the
    same bytes as `gateway usage export`; the Overview puts the fullest rule first."""
    expect = playwright_expect()
    got = _send_traffic(gateway)
    month = time.strftime("%Y-%m", time.gmtime())
    tab = tabs()
    tab.sign_in(KEYS["grafana"])
    page = tab.go("Usage")
    expect(page.locator("section[data-by=user] tbody tr")).to_have_count(3)
    tab.shoot("usage")

    name, text = _download(page, "user")
    assert name == f"usage-{month}-by-user.csv"
    rows = {row["user"]: row for row in csv.DictReader(io.StringIO(text))}
    for user, tally in got.items():
        assert rows[user]["requests"] == str(tally["requests"])
        assert rows[user]["images"] == str(tally["images"])
        assert rows[user]["usd"] == f"{tally['usd_micros'] / 1e6:.6f}"
        assert rows[user]["cache_hits"] == str(tally["cache_hits"])
    api = httpx.get(gateway.url + f"/admin/usage?month={month}&by=user", headers=auth("grafana"))
    assert text == to_csv(api.json()["data"], "user")
    name, text = _download(page, "team")
    assert name == f"usage-{month}-by-team.csv"
    teams = {row["team"]: row for row in csv.DictReader(io.StringIO(text))}
    assert teams["vision"]["images"] == str(got["alice"]["images"] + got["bob"]["images"])
    expect(page.locator("section[data-by=team] tfoot")).to_contain_text(
        str(sum(t["requests"] for t in got.values()))
    )

    page = tab.go("Overview")
    by_endpoint = page.locator("section[data-by=endpoint] tbody tr")
    expect(by_endpoint.first).to_contain_text("variations")  # the month by endpoint and model
    first = page.locator(".rules tbody tr").first
    expect(first).to_contain_text("team vision")  # $0.09 of $0.10: the fullest rule
    tab.shoot("overview", copy_to=README_PICTURE)
    page.get_by_label("Team").select_option("audio")
    expect(page.locator(".rules tbody tr")).to_have_count(3)  # carol's rules, audio's pool
    page.get_by_label("Unit").select_option("usd")
    expect(page.locator(".rules tbody tr")).to_contain_text("Nothing to show.")


def _chart(page: Any, name: str) -> dict[str, float]:
    """A chart's bars as drawn: day -> the value its data attribute and title carry."""
    bars = page.locator(f"svg[data-chart={name}] g.day").evaluate_all(
        "gs => gs.map(g => [g.dataset.day, Number(g.dataset.value)])"
    )
    return dict(bars)


def test_the_daily_spend_chart_draws_what_the_usage_api_says(
    tabs: Callable[..., ConsoleTab], gateway: GatewayProcess
) -> None:
    """After SDK traffic, the Usage page draws vision's month day by day: a bar per day of
    the month whose spend, requests and images are the daily books of `/admin/usage`, the
    team's $0.10 budget as a line, and the API's projection to the month's end."""
    expect = playwright_expect()
    _send_traffic(gateway)
    month = time.strftime("%Y-%m", time.gmtime())
    headers = auth("grafana")
    daily = httpx.get(
        gateway.url + f"/admin/usage?month={month}&by=team&period=day", headers=headers
    ).json()
    tab = tabs()
    tab.sign_in(KEYS["grafana"])
    page = tab.go("Usage")
    section = page.locator("section.spend")
    expect(section).to_have_attribute("data-team", "vision")  # the biggest spender first
    today = time.strftime("%Y-%m-%d", time.gmtime())
    expect(page.locator("svg[data-chart=usd] g.day")).to_have_count(daily["days"].index(today) + 1)
    vision = [row for row in daily["data"] if row["team"] == "vision"]
    for name in ("usd", "requests", "images"):
        drawn = _chart(page, name)  # a bar for every day up to today's
        assert list(drawn) == daily["days"][: len(drawn)] and today in drawn
        assert {day: value for day, value in drawn.items() if value} == {
            row["day"]: row[name] for row in vision if row[name]
        }
    budget = page.locator("svg[data-chart=usd] line.budget")
    assert float(budget.get_attribute("data-value") or "nan") == 0.1
    (forecast,) = [f for f in daily["forecast"] if f["team"] == "vision"]
    projected = page.locator("svg[data-chart=usd] line.projection").get_attribute("data-value")
    assert float(projected or "nan") == pytest.approx(forecast["projected_usd"], rel=0.05)
    expect(section.locator(".summary")).to_contain_text("of a $0.10 monthly budget")
    tab.shoot("usage-chart")
    section.locator("select[name=team]").select_option("audio")
    expect(page.locator("section.spend")).to_have_attribute("data-team", "audio")
    audio = {row["day"]: row["images"] for row in daily["data"] if row["team"] == "audio"}
    drawn = _chart(page, "images")
    assert drawn == {day: audio.get(day, 0) for day in daily["days"][: len(drawn)]}


def test_a_non_admin_is_refused_and_a_wrong_key_is_not_accepted(
    tabs: Callable[..., ConsoleTab],
) -> None:
    """A user's key signs in to a clear refusal, with no navigation and no data; a key
    the gateway does not know is not accepted, and says why."""
    expect = playwright_expect()
    tab = tabs()
    expect(tab.page.locator("#sign-in")).to_be_visible()
    tab.sign_in(KEYS["alice"])
    expect(tab.page.locator("#refused")).to_contain_text("signed in as alice (team vision)")
    expect(tab.page.locator("#nav")).to_be_hidden()
    expect(tab.page.locator("#view")).to_be_empty()
    tab.shoot("refused")
    tab.page.get_by_role("button", name="Sign in with another key").click()
    tab.sign_in("gwk_not_a_key_anyone_has_0000000000000000000")
    expect(tab.page.locator("#sign-in-error")).to_contain_text(
        "Not accepted: Incorrect API key provided."
    )
    tab.shoot("sign-in")


def test_behind_the_sign_in_proxy_an_admin_needs_no_key_and_others_are_refused(
    tabs: Callable[..., ConsoleTab],
) -> None:
    """With a trusted proxy's headers an admin lands on the Overview without pasting
    anything; the same proxy's non-admin is refused."""
    expect = playwright_expect()
    admin = tabs({**PROXY_HEADERS, "X-Forwarded-Groups": "gw-admins"})
    expect(admin.page.locator("#view h2")).to_have_text("Overview")
    expect(admin.page.locator("#who")).to_have_text("root · ops (via sign-in proxy)")
    expect(admin.page.locator("#sign-out")).to_be_hidden()
    user = tabs(PROXY_HEADERS)
    expect(user.page.locator("#refused")).to_contain_text("signed in as root (team ops)")


def test_an_sso_token_signs_an_admin_in_and_an_expired_one_says_why(
    tabs: Callable[..., ConsoleTab], idp: FakeIdP, signing_keys: dict[str, SigningKey]
) -> None:
    """A company token of the admins' group opens the console as its user; an expired
    token is not accepted, and the page says it expired."""
    expect = playwright_expect()
    now = int(time.time())
    expired = idp.token(signing_keys["rsa-1"], iat=now - 900, nbf=now - 900, exp=now - 300)
    tab = tabs()
    tab.sign_in(expired)
    expect(tab.page.locator("#sign-in-error")).to_contain_text("expired (exp)")
    tab.sign_in(idp.token(signing_keys["rsa-1"], groups=["grp-vision", "grp-gateway-admins"]))
    expect(tab.page.locator("#who")).to_have_text("dave@example.com · vision")
    expect(tab.page.locator("#view h2")).to_have_text("Overview")


def test_the_credential_lives_only_in_the_tab(tabs: Callable[..., ConsoleTab]) -> None:
    """After signing in, no cookie and no web storage holds anything; a reload forgets the
    key (the sign-in form is back), and Sign out does the same."""
    expect = playwright_expect()
    tab = tabs()
    tab.sign_in(KEYS["grafana"])
    expect(tab.page.locator("#nav")).to_be_visible()
    stored = "[document.cookie, localStorage.length, sessionStorage.length]"
    assert tab.page.evaluate(stored) == ["", 0, 0]
    assert tab.context.cookies() == []
    assert KEYS["grafana"] not in tab.page.content()
    tab.page.reload()
    expect(tab.page.locator("#sign-in")).to_be_visible()
    tab.sign_in(KEYS["grafana"])
    tab.page.get_by_role("button", name="Sign out").click()
    expect(tab.page.locator("#sign-in")).to_be_visible()
    expect(tab.page.locator("#view")).to_be_empty()


def test_the_console_takes_every_name_and_opens_a_team_only_when_told(
    tabs: Callable[..., ConsoleTab], gateway: GatewayProcess
) -> None:
    """Keys: `Vision` beside the configured vision is refused next to Team with a hint; a
    new team is refused until New team is ticked. Quotas: a user named like an IdP subject
    with a `/` gets a runtime rule saved from the page."""
    expect = playwright_expect()
    tab = tabs()
    tab.sign_in(KEYS["grafana"])
    page = tab.go("Keys")
    form = page.locator("#create-key")
    form.get_by_label("User", exact=True).fill("okta/00u1")
    form.get_by_label("Team", exact=True).fill("Vision")
    form.get_by_role("button", name="Create key").click()
    team_error = form.locator("[data-param=team] .field-error")
    expect(team_error).to_contain_text("did you mean 'vision'")
    form.locator("[name=team]").fill("research")  # its label now holds the error too
    form.get_by_role("button", name="Create key").click()
    expect(team_error).to_contain_text("New team")
    form.locator("[name=new_team]").check()
    form.get_by_role("button", name="Create key").click()
    expect(page.locator(".secret-value")).to_have_value(re.compile(r"^gwk_\S{43}$"))

    page.goto(page.url.split("#")[0] + "#quotas/user/" + quote("okta/00u1", safe=""))
    expect(page.locator("#overrides")).to_contain_text("Runtime overrides of user okta/00u1")
    page.locator("#overrides [name=unit]").select_option("images")
    page.locator("#overrides [data-param='rules.0.limit'] input").fill("6")
    page.get_by_role("button", name="Save overrides").click()
    expect(page.locator(".status.ok")).to_contain_text("Saved")
    everyone = httpx.get(gateway.url + "/admin/quotas", headers=auth("grafana"), timeout=5)
    assert ("user", "okta/00u1") in {
        (o["scope"], o["subject"]) for o in everyone.json()["overrides"]
    }
