"""Company SSO tokens through the app: a real JWKS on loopback, every refusal, key rotation,
bounded refreshes, and an IdP outage that API-key callers never notice.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.config import USER_SECRET, auth
from support.fake_idp import FakeIdP, SigningKey, hmac_with_public_key, unsigned_token
from support.fake_upstream import FakeUpstream
from support.fixtures import AppFactory
from support.requests import assert_openai_error, post_variation

QUOTAS = {"default": [{"unit": "requests", "limit": 2, "window": "minute"}]}
Keys = dict[str, SigningKey]


def bearer(token: str) -> dict[str, str]:
    """An Authorization header carrying `token`."""
    return {"Authorization": f"Bearer {token}"}


def sent_user(upstream: FakeUpstream) -> str:
    """The `user` field of the last request the upstream received."""
    return upstream.received[-1].fields["user"]


def hashed(user: str) -> str:
    """The pseudonym the gateway sends upstream for `user`."""
    return hmac.new(USER_SECRET.encode(), user.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
def sso(make_client: AppFactory, idp: FakeIdP) -> Callable[..., TestClient]:
    """The app with SSO tokens from `idp` enabled; keyword arguments override `identity.jwt`."""

    def build(quotas: dict[str, Any] | None = None, **jwt: Any) -> TestClient:
        identity = {"jwt": idp.jwt_config(**jwt)}
        return make_client({"identity": identity, "quotas": quotas or {"default": []}})

    return build


def post_with(client: TestClient, token: str, **kwargs: Any) -> Any:
    """A variations request authenticated with `token` instead of a gateway key."""
    return post_variation(client, headers=bearer(token), **kwargs)


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1", "ed-1"])
def test_signed_token_is_accepted_and_user_is_the_pseudonym(
    sso: Callable[..., TestClient],
    idp: FakeIdP,
    upstream: FakeUpstream,
    signing_keys: Keys,
    kid: str,
) -> None:
    """An RSA, EC or Ed25519 token authenticates; upstream gets the HMAC of its email."""
    idp.publish(*idp.published, signing_keys["ed-1"])
    client = sso()
    response = post_with(client, idp.token(signing_keys[kid]), fields={"user": "spoofed"})
    assert response.status_code == 200, response.text
    assert sent_user(upstream) == hashed("dave@example.com")


def test_idp_only_user_gets_the_default_quota(
    sso: Callable[..., TestClient], idp: FakeIdP, signing_keys: Keys
) -> None:
    """A user unknown to the config is metered by the default rules, under the mapped team."""
    client = sso(QUOTAS)
    token = idp.token(signing_keys["rsa-1"])
    assert post_with(client, token).status_code == 200
    quota = client.get("/v1/quota", headers=bearer(token)).json()
    assert (quota["user"], quota["team"]) == ("dave@example.com", "vision")
    assert [(r["scope"], r["limit"], r["used"]) for r in quota["rules"]] == [("user", 2, 1)]
    assert post_with(client, token).status_code == 200
    refused = post_with(client, token)
    assert_openai_error(refused, 429, "rate_limit_exceeded", type_="requests")


def test_jwt_and_key_callers_have_separate_counters(
    sso: Callable[..., TestClient], idp: FakeIdP, signing_keys: Keys
) -> None:
    """An SSO user's requests count against their own rules, not a key holder's."""
    client = sso(QUOTAS)
    token = idp.token(signing_keys["rsa-1"])
    for _ in range(2):
        assert post_with(client, token).status_code == 200
    assert post_variation(client, user="alice").status_code == 200


def test_team_claim_and_default_team(
    sso: Callable[..., TestClient], idp: FakeIdP, signing_keys: Keys
) -> None:
    """A team claim names the team; without it the configured default team applies."""
    client = sso(team_claim="department", default_team="misc", group_teams={})
    with_claim = idp.token(signing_keys["rsa-1"], department="audio")
    assert client.get("/v1/quota", headers=bearer(with_claim)).json()["team"] == "audio"
    without = idp.token(signing_keys["rsa-1"])
    assert client.get("/v1/quota", headers=bearer(without)).json()["team"] == "misc"


def test_admin_group_opens_admin_quotas_listing_configured_principals_only(
    sso: Callable[..., TestClient], idp: FakeIdP, signing_keys: Keys
) -> None:
    """A token in the admin group may read /admin/quotas; IdP-only users are not listed there."""
    client = sso(QUOTAS)
    user = idp.token(signing_keys["rsa-1"])
    assert_openai_error(client.get("/admin/quotas", headers=bearer(user)), 403, "permission_denied")
    admin = idp.token(signing_keys["rsa-1"], groups=["grp-vision", "grp-gateway-admins"])
    assert post_with(client, admin).status_code == 200
    body = client.get("/admin/quotas", headers=bearer(admin)).json()
    assert [p["user"] for p in body["principals"]] == ["alice", "bob", "carol", "grafana"]


def test_token_within_leeway_is_accepted(
    sso: Callable[..., TestClient], idp: FakeIdP, signing_keys: Keys
) -> None:
    """A token expired 10 s ago passes with the default 30 s leeway."""
    now = int(time.time())
    token = idp.token(signing_keys["rsa-1"], iat=now - 610, nbf=now - 610, exp=now - 10)
    assert post_with(sso(), token).status_code == 200


def _claims_token(**claims: Any) -> Callable[[FakeIdP, Keys], str]:
    return lambda idp, keys: idp.token(keys["rsa-1"], **claims)


def _tampered(idp: FakeIdP, keys: Keys) -> str:
    head, _, signature = idp.token(keys["rsa-1"]).split(".")
    _, payload, _ = idp.token(keys["rsa-1"], email="mallory@example.com").split(".")
    return f"{head}.{payload}.{signature}"


def _timed(**offsets: int | None) -> Callable[[FakeIdP, Keys], str]:
    """A token whose time claims are these offsets from the moment it is minted."""

    def build(idp: FakeIdP, keys: Keys) -> str:
        now = int(time.time())
        # JSON claim values, as FakeIdP.token takes them.
        claims: dict[str, Any] = {
            name: None if v is None else now + v for name, v in offsets.items()
        }
        return idp.token(keys["rsa-1"], **claims)

    return build


REFUSALS: dict[str, tuple[Callable[[FakeIdP, Keys], str], str]] = {
    "expired": (_timed(iat=-900, nbf=-900, exp=-300), "expired"),
    "not-yet-valid": (_timed(nbf=600, exp=1200), "not valid yet (nbf)"),
    "issued-in-future": (_timed(iat=600, nbf=None), "iat is in the future"),
    "wrong-issuer": (_claims_token(iss="https://evil.example.com"), "wrong issuer"),
    "wrong-audience": (_claims_token(aud="some-other-app"), "wrong audience"),
    "no-audience": (_claims_token(aud=None), "missing claim 'aud'"),
    "no-expiry": (_claims_token(exp=None), "missing claim 'exp'"),
    "bad-signature": (lambda idp, k: idp.token(k["rsa-2"], kid="rsa-1"), "bad signature"),
    "tampered-payload": (_tampered, "bad signature"),
    "unknown-kid": (lambda idp, k: idp.token(k["rsa-3"]), "unknown signing key (kid)"),
    "no-user-claim": (_claims_token(email=None), "missing claim 'email'"),
    "unusable-user": (_claims_token(email="dave {x}"), "not a usable user id"),
    "no-team": (_claims_token(groups=["everyone"]), "missing team"),
    "alg-none": (
        lambda idp, k: unsigned_token({"alg": "none", "kid": "rsa-1"}, idp.claims()),
        "signing algorithm not allowed",
    ),
    "hmac-with-public-key": (
        lambda idp, k: hmac_with_public_key(k["rsa-1"], idp.claims()),
        "signing algorithm not allowed",
    ),
    "key-of-another-type": (
        lambda idp, k: idp.token(k["ec-1"], kid="rsa-1"),
        "does not fit its key",
    ),
    "no-kid": (lambda idp, k: unsigned_token({"alg": "RS256"}, idp.claims()), "missing key id"),
    "malformed": (lambda idp, k: "eyJhbGciOi.bm90IGpzb24.c2ln", "malformed JWT"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_token_is_401_naming_the_cause(
    sso: Callable[..., TestClient],
    idp: FakeIdP,
    upstream: FakeUpstream,
    signing_keys: Keys,
    case: str,
) -> None:
    """Each bad token is a 401 invalid_api_key saying why, never echoing it, reaching nothing."""
    build, cause = REFUSALS[case]
    token = build(idp, signing_keys)
    response = post_with(sso(), token)
    error = assert_openai_error(response, 401, "invalid_api_key")
    assert cause in error["message"]
    assert all(part not in response.text for part in token.split(".") if len(part) > 8)
    assert upstream.received == []


def test_key_rotation_mid_run_refreshes_once_per_interval(
    sso: Callable[..., TestClient], idp: FakeIdP, upstream: FakeUpstream, signing_keys: Keys
) -> None:
    """A new kid at the IdP is fetched on first sight; another within the interval is not."""
    client = sso()
    assert post_with(client, idp.token(signing_keys["rsa-1"])).status_code == 200
    assert idp.fetches == 1
    idp.publish(signing_keys["rsa-1"], signing_keys["rsa-2"])  # the IdP rotates
    assert post_with(client, idp.token(signing_keys["rsa-2"])).status_code == 200
    assert idp.fetches == 2
    idp.publish(signing_keys["rsa-2"], signing_keys["rsa-3"])  # and again, too soon
    refused = post_with(client, idp.token(signing_keys["rsa-3"]))
    assert "unknown signing key" in assert_openai_error(refused, 401, "invalid_api_key")["message"]
    assert idp.fetches == 2
    assert post_with(client, idp.token(signing_keys["rsa-1"])).status_code == 200  # still cached
    assert len(upstream.received) == 3


def test_made_up_kids_cannot_flood_the_idp(
    sso: Callable[..., TestClient], idp: FakeIdP, signing_keys: Keys
) -> None:
    """Fifty tokens with unknown kids cause one refresh in the interval, not fifty."""
    client = sso()
    assert post_with(client, idp.token(signing_keys["rsa-1"])).status_code == 200
    for i in range(50):
        token = idp.token(signing_keys["rsa-3"], kid=f"made-up-{i}")
        assert post_with(client, token).status_code == 401
    assert idp.fetches == 2  # the first sight of a key, then one refresh for unknown kids


def test_refresh_after_the_interval_finds_the_new_key(
    sso: Callable[..., TestClient], idp: FakeIdP, signing_keys: Keys
) -> None:
    """With no minimum interval, every unknown kid is looked up again, and a late key is found."""
    client = sso(jwks_min_refresh_seconds=0)
    assert post_with(client, idp.token(signing_keys["rsa-3"])).status_code == 401
    idp.publish(signing_keys["rsa-1"], signing_keys["rsa-3"])
    assert post_with(client, idp.token(signing_keys["rsa-3"])).status_code == 200
    assert idp.fetches == 2


def test_idp_outage_spares_key_callers_and_cached_kids(
    sso: Callable[..., TestClient], idp: FakeIdP, upstream: FakeUpstream, signing_keys: Keys
) -> None:
    """With the IdP gone, API keys and tokens whose key is cached still work; new kids get 503."""
    client = sso(jwks_min_refresh_seconds=0)
    assert post_with(client, idp.token(signing_keys["rsa-1"])).status_code == 200
    idp.stop()
    assert post_variation(client, user="alice").status_code == 200
    assert post_with(client, idp.token(signing_keys["rsa-1"])).status_code == 200
    assert post_with(client, idp.token(signing_keys["ec-1"])).status_code == 200
    unknown = post_with(client, idp.token(signing_keys["rsa-2"]))
    assert_openai_error(unknown, 503, "identity_provider_unavailable", type_="server_error")
    assert unknown.headers["retry-after"] == "5"
    assert len(upstream.received) == 4


def test_idp_down_from_the_start(
    sso: Callable[..., TestClient], idp: FakeIdP, upstream: FakeUpstream, signing_keys: Keys
) -> None:
    """An IdP that never answered leaves the gateway ready and API keys working."""
    idp.stop()
    client = sso()
    assert client.get("/readyz").status_code == 200
    assert post_variation(client, user="bob").status_code == 200
    response = post_with(client, idp.token(signing_keys["rsa-1"]))
    assert_openai_error(response, 503, "identity_provider_unavailable", type_="server_error")
    assert len(upstream.received) == 1


def test_idp_answering_errors_is_an_outage(
    sso: Callable[..., TestClient], idp: FakeIdP, signing_keys: Keys
) -> None:
    """A JWKS URL answering 500 counts as down: 503, and API keys are unaffected."""
    idp.status = 500
    client = sso()
    response = post_with(client, idp.token(signing_keys["rsa-1"]))
    assert_openai_error(response, 503, "identity_provider_unavailable", type_="server_error")
    assert post_variation(client, user="carol").status_code == 200


def test_jwt_shaped_bearer_without_sso_is_an_unknown_key(
    make_client: AppFactory, idp: FakeIdP, signing_keys: Keys
) -> None:
    """Without identity.jwt a token is just an unknown key (or too long a one), as before."""
    client = make_client()
    short = idp.token(signing_keys["ec-1"])
    assert len(short) <= 512
    error = assert_openai_error(post_with(client, short), 401, "invalid_api_key")
    assert error["message"] == "Incorrect API key provided."
    long = post_with(client, idp.token(signing_keys["rsa-1"]))
    error = assert_openai_error(long, 401, "invalid_api_key")
    assert error["message"].startswith("Malformed Authorization header")
    assert idp.fetches == 0


def test_api_keys_never_touch_the_idp(sso: Callable[..., TestClient], idp: FakeIdP) -> None:
    """Key callers and unknown keys are decided without fetching the JWKS."""
    client = sso()
    assert post_variation(client).status_code == 200
    unknown = client.get("/v1/quota", headers={"Authorization": "Bearer gwk_nope"})
    assert_openai_error(unknown, 401, "invalid_api_key")
    assert client.get("/v1/quota", headers=auth("bob")).status_code == 200
    long = client.get("/v1/quota", headers={"Authorization": "Bearer " + "k" * 600})
    assert assert_openai_error(long, 401, "invalid_api_key")["message"].startswith("Malformed")
    assert idp.fetches == 0
