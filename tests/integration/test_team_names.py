"""Team names from outside the config (SSO tokens, proxy headers): configured teams only
(or mapped to one), and a user's allowance is one whatever team string comes with them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.clock import WindowSafeClock
from support.config import ENV, base_config, merged
from support.fake_idp import FakeIdP, SigningKey
from support.fake_upstream import FakeUpstream
from support.fixtures import AppFactory
from support.requests import assert_openai_error, post_variation

from gateway.app import create_app
from gateway.settings.build import build_settings
from gateway.settings.config import parse_config

TWO_IMAGES = {"default": [{"unit": "images", "limit": 2, "window": "day"}]}
TEAMS = ("vision", "audio", "ops")  # the principals' teams, all configured


@pytest.fixture
def sso(make_client: AppFactory, idp: FakeIdP) -> Callable[..., TestClient]:
    """The app with SSO tokens naming their team in a `department` claim."""

    def build(**jwt: Any) -> TestClient:
        config = idp.jwt_config(team_claim="department", group_teams={}, **jwt)
        return make_client({"identity": {"jwt": config}, "quotas": TWO_IMAGES})

    return build


def token_for(idp: FakeIdP, key: SigningKey, team: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {idp.token(key, department=team)}"}


def test_a_token_naming_an_unknown_team_is_refused(
    sso: Any, idp: FakeIdP, signing_keys: dict[str, SigningKey], upstream: FakeUpstream
) -> None:
    """A team claim outside the config (a typo, a case variant, a made-up one) is a 401."""
    client = sso()
    for team in ("Vision", "visoin", "team-42"):
        response = post_variation(client, headers=token_for(idp, signing_keys["rsa-1"], team))
        error = assert_openai_error(response, 401, "invalid_api_key")
        assert "not a team of this gateway" in error["message"]
    assert upstream.received == []


def test_an_unknown_team_can_be_mapped_to_the_default_team(
    sso: Any, idp: FakeIdP, signing_keys: dict[str, SigningKey]
) -> None:
    """With `unknown_team: default_team` an unknown team counts in the default team."""
    client = sso(unknown_team="default_team", default_team="vision")
    headers = token_for(idp, signing_keys["rsa-1"], "team-42")
    assert client.get("/v1/quota", headers=headers).json()["team"] == "vision"


def test_changing_the_team_claim_does_not_multiply_a_users_allowance(
    sso: Any, idp: FakeIdP, signing_keys: dict[str, SigningKey], upstream: FakeUpstream
) -> None:
    """A user with 2 images a day gets 2 in all, whichever configured team each token names."""
    client = sso()
    statuses = [
        post_variation(client, headers=token_for(idp, signing_keys["rsa-1"], team)).status_code
        for team in TEAMS
    ]
    assert statuses == [200, 200, 429]
    assert len(upstream.received) == 2


def proxied_client(upstream: FakeUpstream, **trusted: Any) -> TestClient:
    """The app behind a trusted proxy at 10.0.0.1 (the test client's address)."""
    section = {"team_header": "X-Team", "proxies": ["10.0.0.0/8"], **trusted}
    overrides = {"identity": {"trusted_header": section}, "quotas": TWO_IMAGES}
    settings = build_settings(parse_config(merged(base_config(upstream.url), overrides)), ENV)
    app = create_app(settings, store_clock=WindowSafeClock())
    return TestClient(app, base_url="http://gateway.test", client=("10.0.0.1", 40000))


def test_proxy_headers_naming_unknown_teams_are_refused_and_known_ones_share_counters(
    upstream: FakeUpstream,
) -> None:
    """Through a trusted proxy: an unknown team is a 401, and one user's 2 images a day are
    2 in all across configured team strings."""
    with proxied_client(upstream) as client:
        asserted = {"X-Forwarded-User": "erin"}
        refused = post_variation(client, headers={**asserted, "X-Team": "Vision"})
        assert_openai_error(refused, 401, "invalid_api_key")
        statuses = [
            post_variation(client, headers={**asserted, "X-Team": team}).status_code
            for team in TEAMS
        ]
    assert statuses == [200, 200, 429]
    assert len(upstream.received) == 2
