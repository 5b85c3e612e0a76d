"""The identity sections of the config: SSO tokens (JWT) and trusted proxy headers."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from gateway.settings.types import ClaimName, HeaderName, Name, Strict

# Signature algorithms a token may use: public-key ones only, each bound to its key type.
JWT_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def _check_algorithm(name: str) -> str:
    if name.lower() == "none":
        raise ValueError("'none' is not allowed: tokens must be signed")
    if name.upper().startswith("HS"):
        # An HMAC "secret" would be the IdP's public key, which anyone can fetch.
        raise ValueError(f"{name} is an HMAC algorithm: only public-key algorithms are allowed")
    if name not in JWT_ALGORITHMS:
        raise ValueError(f"{name} is not supported (one of {', '.join(sorted(JWT_ALGORITHMS))})")
    return name


class ConsoleSignInConfig(Strict):
    """The admin console's sign-in with the company IdP: OIDC authorization code with PKCE,
    the IdP's endpoints from its discovery document unless given here."""

    client_id: str = Field(min_length=1, max_length=256)  # the console's app at the IdP
    client_secret_env: str | None = None  # only for an IdP that will not take a public client
    authorization_endpoint: str | None = Field(None, pattern=r"^https?://[^\s/]+")
    token_endpoint: str | None = Field(None, pattern=r"^https?://[^\s/]+")
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    # Which token the console then sends as its bearer: the access token (its `aud` is the
    # gateway's API, as for any caller) or the ID token (its `aud` is client_id, which must
    # then be among identity.jwt.audience).
    token: Literal["access_token", "id_token"] = "access_token"  # noqa: S105 - a token's name


class JwtConfig(Strict):
    """Company SSO tokens (OIDC JWTs) as bearer credentials, verified against the IdP's JWKS."""

    issuer: str = Field(min_length=1)  # compared exactly with the token's `iss`
    audience: tuple[Annotated[str, Field(min_length=1)], ...] = Field(min_length=1)
    jwks_url: str = Field(pattern=r"^https?://[^\s/]+")
    algorithms: tuple[str, ...] = Field(("RS256",), min_length=1)
    leeway_seconds: float = Field(30.0, ge=0, le=600)
    user_claim: ClaimName = "sub"
    team_claim: ClaimName | None = None
    groups_claim: ClaimName | None = None
    group_teams: dict[str, Name] = Field(default_factory=dict)  # first listed group wins
    default_team: Name | None = None
    # A team named by the token that is not a configured team: refuse (401), or count the
    # caller in default_team. Each team string would otherwise be a fresh allowance.
    unknown_team: Literal["refuse", "default_team"] = "refuse"
    admin_claim: ClaimName | None = None  # a string or list claim, e.g. roles or groups
    admin_values: tuple[str, ...] = ()  # any of these in admin_claim makes the caller admin
    jwks_cache_seconds: float = Field(300.0, gt=0)
    jwks_min_refresh_seconds: float = Field(30.0, ge=0)
    jwks_timeout_seconds: float = Field(5.0, gt=0)
    console: ConsoleSignInConfig | None = None  # the admin console's SSO sign-in

    @field_validator("audience", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value  # the token's `aud` names one

    @field_validator("algorithms")
    @classmethod
    def _public_key_algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_algorithm(name) for name in value)

    @model_validator(mode="after")
    def _mappings_complete(self) -> JwtConfig:
        if self.group_teams and not self.groups_claim:
            raise ValueError("group_teams needs groups_claim (the claim listing the groups)")
        if not (self.team_claim or self.group_teams or self.default_team):
            raise ValueError("set team_claim, groups_claim with group_teams, or default_team")
        if bool(self.admin_claim) != bool(self.admin_values):
            raise ValueError("admin_claim and admin_values go together")
        if self.unknown_team == "default_team" and not self.default_team:
            raise ValueError("unknown_team: default_team needs default_team")
        console = self.console
        id_token = console is not None and console.token == "id_token"  # noqa: S105
        if console and id_token and console.client_id not in self.audience:
            raise ValueError("console.token: id_token needs console.client_id in audience")
        return self


class TrustedHeaderConfig(Strict):
    """Identity asserted in headers by an authenticating proxy, believed only from `proxies`."""

    user_header: HeaderName = "X-Forwarded-User"
    team_header: HeaderName | None = None
    default_team: Name | None = None
    unknown_team: Literal["refuse", "default_team"] = "refuse"  # as for tokens
    role_header: HeaderName | None = None  # comma-separated values; see admin_values
    admin_values: tuple[str, ...] = ("admin",)
    proxies: tuple[str, ...] = Field(min_length=1)  # CIDRs of the proxies' own addresses

    @field_validator("proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr)  # ValueError names the bad entry (e.g. host bits set)
        return value

    @model_validator(mode="after")
    def _team_source(self) -> TrustedHeaderConfig:
        if not (self.team_header or self.default_team):
            raise ValueError("set team_header or default_team")
        if self.unknown_team == "default_team" and not self.default_team:
            raise ValueError("unknown_team: default_team needs default_team")
        return self


class IdentityConfig(Strict):
    user_field: Literal["hashed", "plain"] = "hashed"
    secret_env: str = "GATEWAY_USER_SECRET"  # noqa: S105 - the variable's name, not a secret
    jwt: JwtConfig | None = None
    trusted_header: TrustedHeaderConfig | None = None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def identity_warnings(identity: IdentityConfig) -> list[str]:
    """Risky but valid identity settings, said out loud at start-up and by `config check`."""
    warnings = []
    jwt = identity.jwt
    if jwt is not None:
        url = urlsplit(jwt.jwks_url)
        if url.scheme == "http" and not _is_loopback(url.hostname or ""):
            warnings.append(
                "identity.jwt.jwks_url is plain http: whoever sits on the path can forge tokens"
            )
    headers = identity.trusted_header
    if headers is not None:
        for cidr in headers.proxies:
            if ipaddress.ip_network(cidr).prefixlen == 0:
                warnings.append(
                    f"identity.trusted_header.proxies: {cidr} trusts every address, so anyone "
                    "can claim any identity in a header"
                )
    return warnings
