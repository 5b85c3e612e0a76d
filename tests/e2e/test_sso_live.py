"""SSO tokens and trusted proxy headers against a live gateway on loopback.

The official `openai` SDK carries a company JWT as its api_key; the trusted-header mode is
tried from a real peer address (127.0.0.1), once inside the proxy networks and once not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from support.config import KEYS, USER_SECRET, base_config
from support.fake_idp import FakeIdP, SigningKey
from support.fake_upstream import FakeUpstream
from support.pngs import make_png
from support.servers import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")]
Start = Callable[..., GatewayProcess]
PROXY_HEADERS = {"X-Forwarded-User": "erin", "X-Team": "audio", "X-Groups": "staff,admin"}


def hashed(user: str) -> str:
    """The pseudonym the gateway sends upstream for `user`."""
    return hmac.new(USER_SECRET.encode(), user.encode(), hashlib.sha256).hexdigest()


def with_identity(upstream: FakeUpstream, **identity: Any) -> dict[str, Any]:
    """The test config, forwarding to `upstream`, with this `identity` section."""
    return {**base_config(upstream.url), "identity": identity}


def post(gateway: GatewayProcess, headers: dict[str, str]) -> httpx.Response:
    """A variations request sent from 127.0.0.1 with these headers."""
    files = {"image": ("a.png", make_png(16), "image/png")}
    return httpx.post(gateway.url + "/v1/images/variations", files=files, headers=headers)


@pytest.fixture
def sdk() -> Iterator[Callable[[GatewayProcess, str], openai.OpenAI]]:
    """SDK clients with a gateway base_url and the given api_key; closed after the test."""
    clients: list[openai.OpenAI] = []

    def make(gateway: GatewayProcess, api_key: str) -> openai.OpenAI:
        clients.append(openai.OpenAI(base_url=gateway.url + "/v1", api_key=api_key, max_retries=0))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def test_python_sdk_with_a_jwt_as_api_key(
    start_gateway: Start,
    upstream: FakeUpstream,
    idp: FakeIdP,
    signing_keys: dict[str, SigningKey],
    sdk: Callable[[GatewayProcess, str], openai.OpenAI],
) -> None:
    """The openai SDK given a company JWT works end to end; upstream sees the user's pseudonym."""
    gateway = start_gateway(with_identity(upstream, jwt=idp.jwt_config()))
    token = idp.token(signing_keys["rsa-1"])
    result = sdk(gateway, token).images.create_variation(
        image=make_png(32), n=2, size="256x256", user="spoofed"
    )
    assert result.data is not None
    assert len(result.data) == 2
    [seen] = upstream.received
    assert seen.fields["user"] == hashed("dave@example.com")
    quota = httpx.get(gateway.url + "/v1/quota", headers={"Authorization": f"Bearer {token}"})
    assert (quota.json()["user"], quota.json()["team"]) == ("dave@example.com", "vision")
    now = int(time.time())
    expired = idp.token(signing_keys["ec-1"], iat=now - 900, nbf=now - 900, exp=now - 300)
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(gateway, expired).images.create_variation(image=make_png(32))
    assert caught.value.code == "invalid_api_key" and "expired" in caught.value.message
    assert expired.split(".")[2] not in caught.value.message
    assert len(upstream.received) == 1
    gateway.stop()
    output = gateway.output()
    assert token.split(".")[2] not in output and expired.split(".")[2] not in output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith('{"request_id"')]
    variations = [line for line in lines if line["path"] == "/v1/images/variations"]
    assert [(line["status"], line.get("auth")) for line in variations] == [
        (200, "jwt"),
        (401, None),
    ]


def test_trusted_headers_from_an_allowed_proxy_address(
    start_gateway: Start, upstream: FakeUpstream
) -> None:
    """From 127.0.0.1 inside the proxy networks, the headers are the identity (admin included)."""
    gateway = start_gateway(
        with_identity(
            upstream,
            trusted_header={
                "team_header": "X-Team",
                "role_header": "X-Groups",
                "proxies": ["127.0.0.0/8", "::1/128"],
            },
        )
    )
    assert post(gateway, PROXY_HEADERS).status_code == 200
    assert upstream.received[-1].fields["user"] == hashed("erin")
    admin = httpx.get(gateway.url + "/admin/quotas", headers=PROXY_HEADERS)
    assert admin.status_code == 200
    assert "erin" not in [p["user"] for p in admin.json()["principals"]]
    assert post(gateway, {"Authorization": f"Bearer {KEYS['bob']}"}).status_code == 200
    assert upstream.received[-1].fields["user"] == hashed("bob")


def test_trusted_headers_from_a_disallowed_address_are_ignored(
    start_gateway: Start, upstream: FakeUpstream
) -> None:
    """From 127.0.0.1 outside the proxy networks the headers do nothing; a key still works."""
    gateway = start_gateway(
        with_identity(upstream, trusted_header={"team_header": "X-Team", "proxies": ["10.0.0.0/8"]})
    )
    refused = post(gateway, PROXY_HEADERS)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert "didn't provide an API key" in refused.json()["error"]["message"]
    assert httpx.get(gateway.url + "/admin/quotas", headers=PROXY_HEADERS).status_code == 401
    keyed = post(gateway, {**PROXY_HEADERS, "Authorization": f"Bearer {KEYS['alice']}"})
    assert keyed.status_code == 200
    assert [r.fields["user"] for r in upstream.received] == [hashed("alice")]
