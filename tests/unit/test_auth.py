"""Bearer key -> Identity: configured principals by digest, the demo key, admin, the pseudonym;
and the order in which `Authenticator` tries trusted headers and keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest
from starlette.requests import Request

from gateway.auth.authenticator import (
    Authenticator,
    pseudonym,
    require_admin,
)
from gateway.auth.base import Identity
from gateway.auth.keys import MAX_KEY_LENGTH, ConfigKeys, key_digest
from gateway.auth.proxy_headers import TrustedHeaders
from gateway.errors import AuthenticationError, PermissionDenied
from gateway.settings.config import PrincipalConfig
from gateway.settings.identity import TrustedHeaderConfig

ALICE_KEY = "gwk_alice_0123456789abcdefghijklmnop"
ADMIN_KEY = "gwk_grafana_0123456789abcdefghijklmn"


@pytest.fixture
def authenticator() -> ConfigKeys:
    """Alice (user, team vision) and grafana (admin, team ops), configured by key digest."""
    return ConfigKeys(
        [
            PrincipalConfig(user="alice", team="vision", key_sha256=key_digest(ALICE_KEY)),
            PrincipalConfig(
                user="grafana", team="ops", role="admin", key_sha256=key_digest(ADMIN_KEY)
            ),
        ]
    )


def by_key(keys: ConfigKeys, header: str | None) -> Identity:
    """The identity a request with this Authorization header (or none) gets, with API keys
    the only identity source."""
    sent = {"authorization": header} if header is not None else {}
    return authenticate(Authenticator([keys]), request("192.0.2.1", **sent))


def _refused(authenticator: ConfigKeys, header: str | None) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        by_key(authenticator, header)
    error = caught.value
    assert (error.status, error.type, error.code, error.param) == (
        401,
        "invalid_request_error",
        "invalid_api_key",
        None,
    )
    return error


def test_key_digest_is_sha256_hex() -> None:
    """Keys are configured by their SHA-256 hex digest."""
    assert key_digest("abc") == hashlib.sha256(b"abc").hexdigest()


def test_configured_key_resolves_to_its_identity(authenticator: ConfigKeys) -> None:
    """A configured key yields the principal's user, team and default role."""
    identity = by_key(authenticator, f"Bearer {ALICE_KEY}")
    assert identity == Identity(user="alice", team="vision", role="user")


def test_admin_key_resolves_with_the_admin_role(authenticator: ConfigKeys) -> None:
    """An admin principal's key yields role admin."""
    assert by_key(authenticator, f"Bearer {ADMIN_KEY}") == Identity("grafana", "ops", "admin")


@pytest.mark.parametrize("header", [f"bearer {ALICE_KEY}", f"BEARER {ALICE_KEY}  "])
def test_scheme_is_case_insensitive(authenticator: ConfigKeys, header: str | None) -> None:
    """The Bearer scheme matches in any case, and trailing spaces around the key are ignored."""
    assert by_key(authenticator, header).user == "alice"


@pytest.mark.parametrize("header", [None, ""])
def test_no_header_is_refused(authenticator: ConfigKeys, header: str | None) -> None:
    """No Authorization header is a 401 invalid_api_key that says a key is needed."""
    assert "didn't provide an API key" in _refused(authenticator, header).message


@pytest.mark.parametrize(
    "header",
    [
        f"Basic {ALICE_KEY}",
        f"Token {ALICE_KEY}",
        ALICE_KEY,
        "Bearer",
        "Bearer ",
        "Bearer " + "k" * (MAX_KEY_LENGTH + 1),
    ],
    ids=["basic", "token", "bare-key", "no-key", "empty-key", "too-long"],
)
def test_malformed_header_is_refused(authenticator: ConfigKeys, header: str | None) -> None:
    """A wrong scheme, a missing key or an oversized key is a 401 invalid_api_key."""
    assert "Malformed" in _refused(authenticator, header).message


def test_unknown_key_is_refused_without_echoing_it(authenticator: ConfigKeys) -> None:
    """An unconfigured key is a 401 invalid_api_key whose message does not contain the key."""
    key = "gwk_not_a_real_key_zzzzzzzzzzzzzzzz"
    error = _refused(authenticator, f"Bearer {key}")
    assert key not in error.message
    assert key not in str(error.body())


def test_configured_digest_itself_is_not_a_key(authenticator: ConfigKeys) -> None:
    """Presenting the stored digest instead of the key is refused."""
    _refused(authenticator, f"Bearer {key_digest(ALICE_KEY)}")


def test_demo_key_resolves_to_the_demo_identity() -> None:
    """The demo key authenticates as user demo of team demo, role user."""
    authenticator = ConfigKeys([], demo_key="gwk_demo_key")
    assert by_key(authenticator, "Bearer gwk_demo_key") == Identity("demo", "demo", "user")
    _refused(authenticator, "Bearer gwk_other")


def test_demo_admin_key_resolves_to_a_demo_admin() -> None:
    """The demo admin key authenticates as demo-admin of team demo with the admin role; the
    demo key beside it stays a plain user."""
    authenticator = ConfigKeys([], demo_key="gwk_demo_key", demo_admin_key="gwk_demo_admin")
    admin = by_key(authenticator, "Bearer gwk_demo_admin")
    assert admin == Identity("demo-admin", "demo", "admin")
    assert by_key(authenticator, "Bearer gwk_demo_key").role == "user"


def test_no_demo_key_means_no_demo_identity(authenticator: ConfigKeys) -> None:
    """Without a demo key, an empty or made-up key does not authenticate as demo."""
    _refused(authenticator, "Bearer demo")


def test_require_admin_lets_admins_through() -> None:
    """require_admin returns quietly for an admin identity."""
    require_admin(Identity("grafana", "ops", "admin"))  # passes: raises nothing


def test_require_admin_refuses_users() -> None:
    """require_admin raises 403 permission_denied for a non-admin identity."""
    with pytest.raises(PermissionDenied) as caught:
        require_admin(Identity("alice", "vision"))
    error = caught.value
    assert (error.status, error.type, error.code, error.param) == (
        403,
        "invalid_request_error",
        "permission_denied",
        None,
    )


def test_pseudonym_is_hmac_sha256_hex() -> None:
    """The upstream `user` is HMAC-SHA256(secret, user id) as hex."""
    expected = hmac.new(b"s3cret", b"alice", hashlib.sha256).hexdigest()
    assert pseudonym("s3cret", "alice") == expected
    assert len(expected) == 64


def test_pseudonym_depends_on_user_and_secret() -> None:
    """Different users, or different secrets, give different pseudonyms; the same give the same."""
    assert pseudonym("s", "alice") == pseudonym("s", "alice")
    assert pseudonym("s", "alice") != pseudonym("s", "bob")
    assert pseudonym("s", "alice") != pseudonym("t", "alice")
    assert "alice" not in pseudonym("s", "alice")


def request(peer: str, *extra: tuple[str, str], **headers: str) -> Request:
    """A request from `peer` with these headers (underscores in names become dashes), then
    the `extra` (name, value) pairs, which may repeat a name."""
    pairs = [*((name.replace("_", "-"), value) for name, value in headers.items()), *extra]
    raw = [(name.lower().encode(), value.encode()) for name, value in pairs]
    return Request(
        {"type": "http", "method": "GET", "path": "/", "headers": raw, "client": (peer, 5000)}
    )


def both(authenticator: ConfigKeys) -> Authenticator:
    """API keys plus trusted headers from 10.0.0.0/8 (user and team headers)."""
    config = TrustedHeaderConfig(team_header="X-Team", proxies=("10.0.0.0/8",))
    return Authenticator([TrustedHeaders(config), authenticator])


def authenticate(authenticator: Authenticator, req: Request) -> Identity:
    """Run the async authentication to its end."""
    return asyncio.run(authenticator.authenticate(req))


def test_trusted_headers_come_before_the_key(authenticator: ConfigKeys) -> None:
    """From a proxy, asserted headers decide even when a key is also sent."""
    req = request(
        "10.1.1.1", x_forwarded_user="dave", x_team="vision", authorization=f"Bearer {ALICE_KEY}"
    )
    assert authenticate(both(authenticator), req) == Identity("dave", "vision")


def test_untrusted_headers_are_ignored_and_the_key_decides(authenticator: ConfigKeys) -> None:
    """From elsewhere, the same headers are ignored: the key decides, or its absence refuses."""
    headers = {"x_forwarded_user": "grafana", "x_team": "ops"}
    req = request("192.168.1.1", **headers, authorization=f"Bearer {ALICE_KEY}")
    assert authenticate(both(authenticator), req) == Identity("alice", "vision")
    with pytest.raises(AuthenticationError, match="didn't provide an API key"):
        authenticate(both(authenticator), request("192.168.1.1", **headers))


def test_proxy_without_user_header_lets_key_callers_through(
    authenticator: ConfigKeys,
) -> None:
    """A trusted proxy passing a request without the user header leaves it to the key."""
    req = request("10.1.1.1", authorization=f"Bearer {ADMIN_KEY}")
    assert authenticate(both(authenticator), req) == Identity("grafana", "ops", "admin")


def test_two_authorization_headers_are_refused(authenticator: ConfigKeys) -> None:
    """Two Authorization headers are refused, even both valid: a proxy in front may have
    checked the other one."""
    req = request(
        "192.168.1.1",
        ("Authorization", f"Bearer {ALICE_KEY}"),
        ("Authorization", f"Bearer {ADMIN_KEY}"),
    )
    with pytest.raises(AuthenticationError, match="More than one Authorization header"):
        authenticate(Authenticator([authenticator]), req)


def test_without_sso_a_long_bearer_is_malformed(authenticator: ConfigKeys) -> None:
    """Without identity.jwt, a bearer value over the key limit stays a malformed header."""
    req = request("10.1.1.1", authorization="Bearer " + "a.b." * 200)
    with pytest.raises(AuthenticationError, match="Malformed"):
        authenticate(Authenticator([authenticator]), req)


def test_identities_are_the_configured_principals_only(authenticator: ConfigKeys) -> None:
    """`identities()` lists configured principals, never callers asserted by headers."""
    authenticate(both(authenticator), request("10.1.1.1", x_forwarded_user="dave", x_team="vision"))
    assert [i.user for i in authenticator.identities()] == ["alice", "grafana"]
