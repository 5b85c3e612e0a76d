"""Company SSO tokens (OIDC JWTs) -> `Identity`.

A token is checked in this order, and the first failure is the caller's 401, its message
naming the cause (never quoting the token):

    header parses -> algorithm allowed -> signing key (JWKS, by `kid`) -> signature
    -> iss, aud, required claims -> exp, nbf, iat (with leeway) -> user, team, role

The algorithm allow-list comes from the config, never from the token, and each key is
bound to one algorithm, so neither `alg: none` nor an HMAC "signed" with the public key can
pass. Claims are then mapped to an `Identity` by `identity_from_claims`, a pure function.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from gateway.auth.base import Identity, IdentitySource, Presented, known_team
from gateway.auth.jwks import JwksCache, JwksUnavailable, UnknownKey, UnusableKey
from gateway.errors import AuthenticationError, IdentityProviderUnavailable
from gateway.settings.identity import JwtConfig
from gateway.vocabulary import NAME_RULE, external_name

# Three base64url segments; a gateway key (`gwk_...`) never has a dot.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
MAX_TOKEN_LENGTH = 16 * 1024  # IdP tokens with many groups run to a few KiB
REQUIRED_CLAIMS = ["iss", "aud", "exp"]


def looks_like_jwt(value: str) -> bool:
    """Whether a bearer value has the shape of a compact JWT (three base64url segments)."""
    return _COMPACT_JWS.fullmatch(value) is not None


def rejected(reason: str) -> AuthenticationError:
    """The 401 for a token, saying why in words of the gateway's own."""
    return AuthenticationError(f"Invalid token: {reason}.")


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """The claim `name`; a dotted name not present as such is a path (`realm_access.roles`)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _strings(value: Any) -> list[str]:
    """A claim that is one string or a list of them, as a list (anything else: empty)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _name_claim(claims: Mapping[str, Any], name: str, what: str) -> str:
    value = claim(claims, name)
    if value is None:
        raise rejected(f"missing claim '{name}' ({what})")
    usable = external_name(value)
    if usable is None:
        raise rejected(f"claim '{name}' is not a usable {what} ({NAME_RULE})")
    return usable


def _team(config: JwtConfig, claims: Mapping[str, Any]) -> str:
    """The team claim, else the first `group_teams` entry the caller is in, else the default."""
    if config.team_claim and claim(claims, config.team_claim) is not None:
        return _name_claim(claims, config.team_claim, "team")
    if config.groups_claim and config.group_teams:
        groups = set(_strings(claim(claims, config.groups_claim)))
        for group, team in config.group_teams.items():
            if group in groups:
                return team
    if config.default_team:
        return config.default_team
    if config.team_claim:
        raise rejected(f"missing claim '{config.team_claim}' (team)")
    raise rejected(f"missing team: no group in claim '{config.groups_claim}' maps to a team")


def identity_from_claims(
    config: JwtConfig, claims: Mapping[str, Any], teams: frozenset[str] | None = None
) -> Identity:
    """The caller a verified token names; raises `AuthenticationError` for a missing claim,
    or a team outside `teams` (the configured ones) unless `unknown_team` maps it."""
    user = _name_claim(claims, config.user_claim, "user id")
    named = _team(config, claims)
    team = (
        named
        if teams is None
        else known_team(named, teams, config.default_team, config.unknown_team)
    )
    if team is None:
        raise rejected(f"team '{named[:64]}' is not a team of this gateway")
    admin = bool(
        config.admin_claim
        and set(_strings(claim(claims, config.admin_claim))) & set(config.admin_values)
    )
    return Identity(user, team, "admin" if admin else "user", source="jwt")


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise rejected(f"claim '{name}' is not a number")
    return float(value)


def check_times(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    """exp, nbf and iat against `now` (epoch seconds), each with `leeway` seconds of slack."""
    expires = _number(claims, "exp")
    if expires is not None and now >= expires + leeway:
        raise rejected("it has expired (exp)")
    not_before = _number(claims, "nbf")
    if not_before is not None and now + leeway < not_before:
        raise rejected("it is not valid yet (nbf)")
    issued = _number(claims, "iat")
    if issued is not None and now + leeway < issued:
        raise rejected("it is not valid yet (iat is in the future)")


_DECODE_ERRORS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidIssuerError, "wrong issuer (iss)"),
    (jwt.InvalidAudienceError, "wrong audience (aud)"),
    (jwt.InvalidAlgorithmError, "signing algorithm not allowed"),
    (jwt.InvalidKeyError, "its signing key is not acceptable (too short)"),
    (InvalidSubjectError, "claim 'sub' is not a string"),
    (InvalidJTIError, "claim 'jti' is not a string"),
    (jwt.DecodeError, "malformed JWT"),
)


def _decode_error(exc: jwt.PyJWTError) -> AuthenticationError:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return rejected(f"missing claim '{exc.claim}'")
    for kind, reason in _DECODE_ERRORS:
        if isinstance(exc, kind):
            return rejected(reason)
    return rejected("it failed validation")


class JwtVerifier(IdentitySource):
    """Verifies company SSO tokens against the IdP's keys and maps them to an `Identity`."""

    bearer_limit = MAX_TOKEN_LENGTH

    def __init__(
        self,
        config: JwtConfig,
        keys: JwksCache,
        clock: Callable[[], float] = time.time,
        *,
        teams: frozenset[str] | None = None,
    ) -> None:
        self._config, self._keys, self._clock = config, keys, clock
        self._teams = teams  # the configured teams (None: any, for unit tests of claims)

    async def identify(self, presented: Presented) -> Identity | None:
        """The identity of a bearer value shaped like a JWT (see `authenticate`); None for
        any other value."""
        value = presented.bearer()
        return await self.authenticate(value) if looks_like_jwt(value) else None

    async def authenticate(self, token: str) -> Identity:
        """The token's identity; raises `AuthenticationError` (401) naming what is wrong, or
        `IdentityProviderUnavailable` (503) when its key cannot be fetched now.
        """
        algorithm, kid = self._header(token)
        try:
            key = await self._keys.key(kid, algorithm)
        except UnknownKey:
            raise rejected("unknown signing key (kid), even after refreshing the JWKS") from None
        except UnusableKey:
            raise rejected("the signing algorithm does not fit its key (kid)") from None
        except JwksUnavailable as exc:
            raise IdentityProviderUnavailable() from exc
        claims = self._verified_claims(token, key)
        check_times(claims, self._clock(), self._config.leeway_seconds)
        identity = identity_from_claims(self._config, claims, self._teams)
        subject = claims.get("sub")
        return replace(
            identity,
            issuer=self._config.issuer,
            subject=subject if isinstance(subject, str) else None,
        )

    def _header(self, token: str) -> tuple[str, str]:
        """The token's `alg` (if allowed) and `kid`, read before anything is trusted."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise rejected("malformed JWT") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in self._config.algorithms:
            raise rejected("signing algorithm not allowed")
        if not isinstance(kid, str) or not kid:
            raise rejected("missing key id (kid) in its header")
        return algorithm, kid

    def _verified_claims(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        """Signature, issuer, audience and presence of the required claims (times: ours)."""
        try:
            return jwt.decode(
                token,
                key=key,
                algorithms=[key.algorithm_name],
                audience=list(self._config.audience),
                issuer=self._config.issuer,
                options={
                    "require": REQUIRED_CLAIMS,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise _decode_error(exc) from None
