"""SSO token rules without a network: allowed algorithms, claims -> Identity, time checks."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.auth.base import Identity
from gateway.auth.oidc import check_times, claim, identity_from_claims, looks_like_jwt
from gateway.errors import AuthenticationError
from gateway.settings.config import ConfigError, parse_config
from gateway.settings.identity import JwtConfig
from gateway.vocabulary import external_name

BASE: dict[str, Any] = {
    "issuer": "https://login.example.com/oauth2/default",
    "audience": "image-gateway",
    "jwks_url": "https://login.example.com/oauth2/default/v1/keys",
}


def config(**overrides: Any) -> JwtConfig:
    """A valid identity.jwt section with `overrides` (users by sub, default team misc)."""
    return JwtConfig.model_validate({**BASE, "default_team": "misc", **overrides})


def refusal(cfg: JwtConfig, claims: dict[str, Any]) -> str:
    """The 401 message `identity_from_claims` gives for `claims`."""
    with pytest.raises(AuthenticationError) as caught:
        identity_from_claims(cfg, claims)
    assert (caught.value.status, caught.value.code) == (401, "invalid_api_key")
    return caught.value.message


def jwt_error(section: dict[str, Any]) -> str:
    """The config error for an identity.jwt section."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"identity": {"jwt": section}})
    return str(caught.value)


@pytest.mark.parametrize(
    ("algorithm", "says"),
    [
        ("none", "'none' is not allowed"),
        ("NONE", "'none' is not allowed"),
        ("HS256", "HMAC"),
        ("hs512", "HMAC"),
        ("RS1", "not supported"),
    ],
)
def test_unsafe_or_unknown_algorithms_are_config_errors(algorithm: str, says: str) -> None:
    """`none`, every HMAC algorithm and unknown names are refused, at identity.jwt.algorithms."""
    message = jwt_error({**BASE, "default_team": "t", "algorithms": ["RS256", algorithm]})
    assert "identity.jwt.algorithms" in message and says in message


def test_public_key_algorithms_are_accepted() -> None:
    """Every RSA, RSA-PSS, ECDSA and EdDSA algorithm may be configured; RS256 is the default."""
    assert config().algorithms == ("RS256",)
    names = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
    assert config(algorithms=[*names, "EdDSA"]).algorithms == (*names, "EdDSA")


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ({"default_team": None}, "team_claim, groups_claim with group_teams, or default_team"),
        ({"group_teams": {"g": "t"}}, "group_teams needs groups_claim"),
        ({"admin_claim": "roles"}, "admin_claim and admin_values go together"),
        ({"jwks_url": "ldap://idp"}, "identity.jwt.jwks_url"),
        ({"audience": []}, "identity.jwt.audience"),
        ({"leeway_seconds": -1}, "identity.jwt.leeway_seconds"),
        ({"issuer": None}, "identity.jwt.issuer"),
        ({"client_secret": "x"}, "identity.jwt.client_secret: unknown key"),
    ],
)
def test_incomplete_jwt_section_is_a_config_error(section: dict[str, Any], says: str) -> None:
    """A section that could never resolve a team, or with a bad field, names what is wrong."""
    raw = {**BASE, "default_team": "misc", **section}
    assert says in jwt_error({k: v for k, v in raw.items() if v is not None})


def test_audience_may_be_one_string_or_several() -> None:
    """`audience` takes a string or a list; either way the token's aud must name one of them."""
    assert config().audience == ("image-gateway",)
    assert config(audience=["a", "b"]).audience == ("a", "b")


def test_user_team_and_role_from_claims() -> None:
    """The user claim, the team claim and an admin value in a list claim make the Identity."""
    cfg = config(
        user_claim="email", team_claim="team", admin_claim="roles", admin_values=["gw-admin"]
    )
    claims = {"email": "dave@example.com", "team": "vision", "roles": ["reader", "gw-admin"]}
    assert identity_from_claims(cfg, claims) == Identity("dave@example.com", "vision", "admin")
    assert identity_from_claims(cfg, claims).source == "jwt"
    claims["roles"] = "reader"
    assert identity_from_claims(cfg, claims).role == "user"


def test_first_listed_group_decides_the_team() -> None:
    """With several mapped groups, the first one listed in group_teams wins, not token order."""
    cfg = config(groups_claim="groups", group_teams={"grp-audio": "audio", "grp-vision": "vision"})
    claims = {"sub": "u1", "groups": ["grp-vision", "grp-audio"]}
    assert identity_from_claims(cfg, claims).team == "audio"


def test_team_claim_beats_groups_and_default_comes_last() -> None:
    """Team claim first, then the group map, then default_team."""
    cfg = config(team_claim="team", groups_claim="groups", group_teams={"g": "from-group"})
    assert identity_from_claims(cfg, {"sub": "u", "team": "t", "groups": ["g"]}).team == "t"
    assert identity_from_claims(cfg, {"sub": "u", "groups": ["g"]}).team == "from-group"
    assert identity_from_claims(cfg, {"sub": "u", "groups": ["other"]}).team == "misc"


def test_unresolvable_team_names_the_missing_claim() -> None:
    """No team claim and no mapped group, without a default: 401 saying the team is missing."""
    assert "missing claim 'dept' (team)" in refusal(
        config(team_claim="dept", default_team=None), {"sub": "u"}
    )
    groups_only = config(default_team=None, groups_claim="groups", group_teams={"g": "t"})
    assert "no group in claim 'groups' maps to a team" in refusal(groups_only, {"sub": "u"})


@pytest.mark.parametrize(
    "value", [None, "", "has space", "brace{tag}", "x" * 257, 42, ["u"], "tab\there", "é"]
)
def test_unusable_user_claim_is_refused_without_echo(value: Any) -> None:
    """A missing, non-string or unsafe user id is a 401 naming the claim, not its value."""
    claims = {} if value is None else {"sub": value}
    message = refusal(config(), claims)
    assert "'sub'" in message
    if isinstance(value, str) and len(value) > 2:
        assert value not in message


def test_dotted_claim_names_walk_nested_objects_unless_present_as_is() -> None:
    """`realm_access.roles` reads a nested claim; a namespaced claim with dots is read whole."""
    claims = {"realm_access": {"roles": ["admin"]}, "https://corp.example/team": "vision"}
    assert claim(claims, "realm_access.roles") == ["admin"]
    assert claim(claims, "https://corp.example/team") == "vision"
    assert claim(claims, "realm_access.missing") is None
    assert claim(claims, "absent") is None


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ({"exp": 900}, "expired"),
        ({"exp": 970}, "expired"),
        ({"exp": 1000, "nbf": 1031}, "not valid yet (nbf)"),
        ({"exp": 1100, "iat": 1031}, "iat is in the future"),
        ({"exp": "soon"}, "claim 'exp' is not a number"),
        ({"exp": True}, "claim 'exp' is not a number"),
        ({"exp": 1100, "nbf": "now"}, "claim 'nbf' is not a number"),
    ],
)
def test_time_claims_outside_the_leeway_are_refused(claims: dict[str, Any], says: str) -> None:
    """At t=1000 with 30 s leeway: exp <= 970, nbf or iat > 1030 and non-numbers are refused."""
    with pytest.raises(AuthenticationError) as caught:
        check_times(claims, now=1000.0, leeway=30)
    assert says in caught.value.message


@pytest.mark.parametrize(
    "claims", [{"exp": 971}, {"exp": 1000.5, "nbf": 1030, "iat": 1030}, {"exp": 5000}]
)
def test_time_claims_within_the_leeway_pass(claims: dict[str, Any]) -> None:
    """At t=1000 with 30 s leeway: exp after 970 and nbf or iat up to 1030 are accepted."""
    check_times(claims, now=1000.0, leeway=30)  # passes: raises nothing


@pytest.mark.parametrize(
    ("value", "is_jwt"),
    [
        ("eyJh.eyJz.c2ln", True),
        ("eyJh.eyJz.", True),  # an unsigned token still goes to the JWT path, to be refused
        ("gwk_abc-DEF_123", False),
        ("a.b", False),
        ("a.b.c.d", False),
        ("a.b+c.d", False),
        ("a..c", False),
    ],
)
def test_what_looks_like_a_jwt(value: str, is_jwt: bool) -> None:
    """Only three base64url segments are treated as a token; gateway keys never are."""
    assert looks_like_jwt(value) is is_jwt


@pytest.mark.parametrize(
    ("value", "usable"),
    [
        ("dave@example.com", True),
        ("auth0|5f7c8ec7", True),
        ("00u1abcd/ü", False),
        ("", False),
        ("a}b", False),
        (None, False),
    ],
)
def test_external_names(value: Any, usable: bool) -> None:
    """Names from outside: printable ASCII, no spaces or braces, up to 256 characters."""
    assert (external_name(value) is not None) is usable
