"""Trusted proxy headers: believed from the proxies' networks only, and checked when believed."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.datastructures import Headers

from gateway.auth.base import Identity
from gateway.auth.proxy_headers import TrustedHeaders, peer_address
from gateway.errors import AuthenticationError
from gateway.settings.identity import TrustedHeaderConfig

PROXY = "10.20.0.7"


def trusted(**overrides: Any) -> TrustedHeaders:
    """Headers from 10.20.0.0/16 and fd00::/8: user, team and a comma-separated groups header."""
    section = {
        "user_header": "X-Auth-User",
        "team_header": "X-Auth-Team",
        "role_header": "X-Auth-Groups",
        "admin_values": ["gateway-admins"],
        "proxies": ["10.20.0.0/16", "fd00::/8"],
        **overrides,
    }
    return TrustedHeaders(TrustedHeaderConfig.model_validate(section))


def headers(*pairs: tuple[str, str]) -> Headers:
    """Request headers as the ASGI server passes them (duplicates kept)."""
    return Headers(raw=[(name.lower().encode(), value.encode()) for name, value in pairs])


DAVE = (("X-Auth-User", "dave"), ("X-Auth-Team", "vision"))


def refused(reader: TrustedHeaders, pairs: tuple[tuple[str, str], ...]) -> str:
    """The 401 message for headers a trusted proxy sent."""
    with pytest.raises(AuthenticationError) as caught:
        reader.identity(headers(*pairs), PROXY)
    assert (caught.value.status, caught.value.code) == (401, "invalid_api_key")
    return caught.value.message


def test_trusted_proxy_asserts_user_and_team() -> None:
    """From a proxy address, the user and team headers make the Identity, source header."""
    identity = trusted().identity(headers(*DAVE), PROXY)
    assert identity == Identity("dave", "vision", "user")
    assert identity is not None and identity.source == "header"


@pytest.mark.parametrize(
    "peer", ["10.21.0.7", "127.0.0.1", "::1", "testclient", None, "", "10.20.0.7.evil"]
)
def test_headers_from_anywhere_else_are_ignored(peer: str | None) -> None:
    """Outside the proxy networks (or no IP at all) the headers count for nothing."""
    assert trusted().identity(headers(*DAVE), peer) is None


@pytest.mark.parametrize("peer", ["fd00::1", "::ffff:10.20.3.4"])
def test_ipv6_and_ipv4_mapped_peers_match_their_networks(peer: str) -> None:
    """An IPv6 proxy matches its network; an IPv4-mapped IPv6 peer matches the IPv4 one."""
    assert trusted().identity(headers(*DAVE), peer) == Identity("dave", "vision")


def test_no_user_header_falls_through_to_bearer_auth() -> None:
    """A trusted proxy passing a caller without a user header (or an empty one) asserts nothing."""
    assert trusted().identity(headers(("X-Auth-Team", "vision")), PROXY) is None
    assert trusted().identity(headers(("X-Auth-User", ""), ("X-Auth-Team", "v")), PROXY) is None


def test_admin_value_in_the_role_header_grants_admin() -> None:
    """Any listed admin value in the comma-separated role header makes the caller admin."""
    reader = trusted()
    admin = (*DAVE, ("X-Auth-Groups", "staff, Gateway-Admins"))
    assert reader.identity(headers(*admin), PROXY) == Identity("dave", "vision", "admin")
    staff = (*DAVE, ("X-Auth-Groups", "staff,gateway-admins-not"))
    assert reader.identity(headers(*staff), PROXY) == Identity("dave", "vision", "user")


def test_default_team_when_the_team_header_is_absent() -> None:
    """Without a team header, default_team applies; with neither, the 401 names the header."""
    reader = trusted(default_team="misc")
    assert reader.identity(headers(("X-Auth-User", "dave")), PROXY) == Identity("dave", "misc")
    assert "X-Auth-Team header (team)" in refused(trusted(), (("X-Auth-User", "dave"),))


def test_a_header_sent_twice_is_refused() -> None:
    """Two user headers mean the proxy appended instead of replacing: refused, not guessed."""
    message = refused(trusted(), (("X-Auth-User", "mallory"), *DAVE))
    assert "X-Auth-User header twice" in message and "mallory" not in message


@pytest.mark.parametrize("user", ["da ve", "{vision}", "x" * 300])
def test_unusable_names_are_refused_without_echo(user: str) -> None:
    """A user id with spaces or braces, or too long, is refused without quoting it."""
    message = refused(trusted(), (("X-Auth-User", user), ("X-Auth-Team", "vision")))
    assert "X-Auth-User" in message and user not in message


@pytest.mark.parametrize(
    ("host", "expected"),
    [("10.0.0.1", "10.0.0.1"), ("::ffff:10.0.0.1", "10.0.0.1"), ("::1", "::1"), ("x", None)],
)
def test_peer_address(host: str, expected: str | None) -> None:
    """Peer hosts parse as IP addresses, IPv4-mapped ones unwrapped; anything else is None."""
    address = peer_address(host)
    assert (str(address) if address is not None else None) == expected


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ({"proxies": ["10.0.0.1/8"]}, "host bits set"),
        ({"proxies": ["intranet"]}, "does not appear to be an IPv4 or IPv6 network"),
        ({"proxies": []}, "at least 1 item"),
        ({"team_header": None}, "set team_header or default_team"),
        ({"user_header": "X Auth"}, "user_header"),
    ],
)
def test_bad_trusted_header_config_is_refused(section: dict[str, Any], says: str) -> None:
    """Unparsable or host-bit CIDRs, no proxies, no team source, bad header names: refused."""
    raw = {"team_header": "X-Team", "proxies": ["10.0.0.0/8"], **section}
    with pytest.raises(ValueError, match=says):
        TrustedHeaderConfig.model_validate(raw)
