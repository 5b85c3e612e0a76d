"""Awkward user and team names on every admin route of a live gateway, through the API as
an HTTP client sends it and through the CLI: every name the rule allows works, and the
names no URL can carry are refused by the rule itself, before anything is made."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from support.cli import cli
from support.config import auth
from support.servers import GatewayProcess

pytestmark = pytest.mark.e2e
ADMIN = auth("grafana")
RULES = {"rules": [{"unit": "images", "window": "day", "limit": 5}]}
# A `/` (an SSO subject's), a `%` and what looks percent-encoded already, URL delimiters,
# dot segments inside a name, a backslash, leading and doubled slashes.
AWKWARD = ["a/b", "%", "a%2Fb", "a?b#c", "a/../b", "..a", "corp\\jdoe", "/lead", "a//b", "~|!"]


@pytest.mark.parametrize("name", AWKWARD)
def test_every_admin_route_takes_an_awkward_name(live: GatewayProcess, name: str) -> None:
    """A key for the name, its listing, the user's and the team's runtime rules (set, read
    back, unset) and their alerts answer for exactly that name."""
    made = httpx.post(
        live.url + "/admin/keys", json={"user": name, "team": "vision"}, headers=ADMIN
    )
    assert made.status_code == 201, made.text
    listed = httpx.get(live.url + "/admin/keys", params={"user": name}, headers=ADMIN).json()
    assert [k["user"] for k in listed["data"]] == [name]
    hook = {"name": "leads", "url": "http://127.0.0.1:9/hook"}
    webhook = httpx.post(live.url + "/admin/webhooks", json=hook, headers=ADMIN).json()["id"]
    alert = {"thresholds": [80], "webhooks": [webhook]}
    for scope in ("quotas", "alerts"):
        for kind in ("users", "teams"):
            path = f"{live.url}/admin/{scope}/{kind}/{quote(name, safe='')}"
            put = httpx.put(path, json=RULES if scope == "quotas" else alert, headers=ADMIN)
            assert put.status_code == 200 and put.json()["subject"] == name, put.text
            gone = httpx.delete(path, headers=ADMIN)
            assert gone.status_code == 200 and gone.json()["subject"] == name, gone.text


@pytest.mark.parametrize("name", ["a/b", "%2F", "a?b", "x/../y"])
def test_the_cli_sets_shows_and_unsets_rules_for_an_awkward_name(
    live: GatewayProcess, name: str
) -> None:
    """`quotas set/show/unset --user NAME` work for names with `/`, `%`, `?` and dots."""
    assert cli(live.url, "quotas", "set", "--user", name, "--rule", "images:day:5").code == 0
    shown = cli(live.url, "quotas", "show", "--user", name).json()
    assert [o["subject"] for o in shown["overrides"]] == [name]
    assert cli(live.url, "quotas", "unset", "--user", name).code == 0


@pytest.mark.parametrize("name", [".", "..", "a b", "caf\u00e9", "{q}"])
def test_a_name_no_path_can_carry_is_refused_before_anything_is_made(
    live: GatewayProcess, name: str
) -> None:
    """`.` and `..` (every client and browser drops them from a URL path), a space, a
    non-ASCII letter or braces: the key is refused with a 400 naming `user`, and no key is
    made."""
    made = httpx.post(
        live.url + "/admin/keys", json={"user": name, "team": "vision"}, headers=ADMIN
    )
    assert made.status_code == 400, made.text
    assert made.json()["error"]["param"] == "user"
    assert httpx.get(live.url + "/admin/keys", headers=ADMIN).json()["data"] == []
