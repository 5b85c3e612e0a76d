"""The console's SSO code redemption without a browser: the provider checks the PKCE
verifier, a code is redeemed once, and what the gateway hands back is a token its own
API accepts."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from starlette.testclient import TestClient
from support.fake_idp import CONSOLE_CLIENT, FakeIdP

REDIRECT = "http://gateway.test/admin/console/callback"


def _client(make_client: Callable[..., TestClient], idp: FakeIdP) -> TestClient:
    jwt = idp.jwt_config(console=idp.console_config())
    return make_client({"identity": {"jwt": jwt}})


def _code(idp: FakeIdP, verifier: str) -> str:
    """A browser's trip to the authorization endpoint with the verifier's S256 challenge."""
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    query = {
        "response_type": "code", "client_id": CONSOLE_CLIENT, "redirect_uri": REDIRECT,
        "state": "s1", "nonce": "n1", "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    answer = httpx.get(idp.discovery()["authorization_endpoint"] + "?" + urlencode(query))
    assert answer.status_code == 302
    return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]


def _redeem(client: TestClient, code: str, verifier: str) -> Any:
    body = {"code": code, "code_verifier": verifier, "redirect_uri": REDIRECT, "nonce": "n1"}
    return client.post("/admin/console/sso/token", json=body)


def test_the_provider_refuses_a_code_without_its_verifier(
    make_client: Callable[..., TestClient], idp: FakeIdP
) -> None:
    """A code redeemed with another verifier is refused by the provider (401, nothing
    issued); with its own verifier it gives a token the admin API takes; a code is good
    once."""
    client = _client(make_client, idp)
    idp.signed_in = {"groups": ["grp-vision", "grp-gateway-admins"]}
    offered = client.get("/admin/console/sso").json()
    assert offered["enabled"] and offered["client_id"] == CONSOLE_CLIENT
    verifier = secrets.token_urlsafe(32)
    refused = _redeem(client, _code(idp, verifier), secrets.token_urlsafe(32))
    assert refused.status_code == 401
    assert "invalid_grant" in refused.json()["error"]["message"]
    code = _code(idp, verifier)
    signed_in = _redeem(client, code, verifier)
    assert signed_in.status_code == 200, signed_in.text
    assert [e["result"] for e in idp.exchanges] == ["refused: pkce", "issued"]
    token = signed_in.json()["token"]
    assert signed_in.json()["role"] == "admin"
    admin = client.get("/admin/quotas", headers={"Authorization": f"Bearer {token}"})
    assert admin.status_code == 200
    assert _redeem(client, code, verifier).status_code == 401  # used once


def test_without_a_console_section_sso_is_not_offered(client: TestClient) -> None:
    """A gateway without `identity.jwt.console` says so, and redeems nothing."""
    assert client.get("/admin/console/sso").json() == {"enabled": False}
    assert client.post("/admin/console/sso/token", json={}).status_code == 404
