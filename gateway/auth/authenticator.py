"""A request -> `Identity`: the one place that decides who is calling.

`Authenticator` tries, in order:

1. trusted proxy headers, if configured and the TCP peer is one of the proxies
   (`proxy_headers.py`);
2. the bearer value as a gateway API key: keys are never stored, the config holds their
   SHA-256, and a presented key is hashed and looked up by digest, so the lookup's timing
   reveals nothing about any stored key;
3. the bearer value as a company SSO token, if configured and it has a JWT's shape
   (`oidc.py`, keys from `jwks.py`).

Each yields the same `Identity`. A JWT caller never waits on the IdP unless their token's
key is unknown, and an API-key caller never touches the IdP at all.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable

from starlette.requests import HTTPConnection

from gateway.auth.identity import Identity, Role
from gateway.auth.oidc import MAX_TOKEN_LENGTH, JwtVerifier, looks_like_jwt
from gateway.auth.proxy_headers import TrustedHeaders
from gateway.errors import AuthenticationError, PermissionDenied
from gateway.settings import PrincipalConfig

__all__ = [
    "MAX_KEY_LENGTH",
    "Authenticator",
    "Identity",
    "KeyAuthenticator",
    "Role",
    "bearer_value",
    "key_digest",
    "missing_key",
    "pseudonym",
    "require_admin",
]
MAX_KEY_LENGTH = 512


def key_digest(key: str) -> str:
    """The SHA-256 hex digest under which a key is configured."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyAuthenticator:
    """Resolves `Authorization: Bearer <key>` against the configured principals."""

    def __init__(
        self,
        principals: Iterable[PrincipalConfig],
        demo_key: str | None = None,
        demo_admin_key: str | None = None,
    ) -> None:
        self._by_digest = {p.key_sha256: Identity(p.user, p.team, p.role) for p in principals}
        if demo_key:
            self._by_digest[key_digest(demo_key)] = Identity("demo", "demo")
        if demo_admin_key:  # `serve --demo-key` on the sandbox: the console, locally
            self._by_digest[key_digest(demo_admin_key)] = Identity("demo-admin", "demo", "admin")

    def identities(self) -> list[Identity]:
        """Every configured identity, ordered by user."""
        return sorted(self._by_digest.values(), key=lambda identity: identity.user)

    def lookup(self, key: str) -> Identity | None:
        """The identity configured for `key`, or None."""
        return self._by_digest.get(key_digest(key))


def bearer_value(authorization: str | None, max_length: int) -> str:
    """The credential of `Authorization: Bearer <value>`; raises `AuthenticationError`."""
    if not authorization:
        raise missing_key()
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > max_length:
        raise AuthenticationError("Malformed Authorization header: expected 'Bearer <key>'.")
    return value


def missing_key() -> AuthenticationError:
    """The refusal of a request that sends no Authorization header."""
    return AuthenticationError(
        "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
    )


class Authenticator:
    """Every configured identity source, tried in the order the module docstring gives."""

    def __init__(
        self,
        keys: KeyAuthenticator,
        jwt: JwtVerifier | None = None,
        headers: TrustedHeaders | None = None,
        runtime_keys: Callable[[str], Identity | None] | None = None,
        runtime_identities: Callable[[], list[Identity]] | None = None,
    ) -> None:
        self._keys, self._jwt, self._headers = keys, jwt, headers
        # Keys issued at run time (admin_state.py), after the config's: no I/O either.
        self._runtime_keys = runtime_keys or (lambda key: None)
        self._runtime_identities = runtime_identities or list

    def identities(self) -> list[Identity]:
        """Every identity a key opens: the configured principals, then the users of live
        runtime keys, each once (callers known only to the IdP or a proxy are not)."""
        return list(dict.fromkeys([*self._keys.identities(), *self._runtime_identities()]))

    def needs_bearer(self, peer: str | None) -> bool:
        """Whether a request from `peer` can only be authenticated by an Authorization header
        (no trusted proxy may name its caller in other headers)."""
        return self._headers is None or not self._headers.is_trusted(peer)

    async def authenticate(self, request: HTTPConnection) -> Identity:
        """The caller of `request`; raises `AuthenticationError` (401), or
        `IdentityProviderUnavailable` (503) when a token's key cannot be fetched now.
        """
        if self._headers is not None:
            peer = request.client.host if request.client else None
            asserted = self._headers.identity(request.headers, peer)
            if asserted is not None:
                return asserted
        limit = MAX_TOKEN_LENGTH if self._jwt is not None else MAX_KEY_LENGTH
        presented = request.headers.getlist("authorization")
        if len(presented) > 1:  # which one counts would depend on who reads it
            raise AuthenticationError("More than one Authorization header: send one.")
        value = bearer_value(presented[0] if presented else None, limit)
        identity = self._keys.lookup(value) or self._runtime_keys(value)
        if identity is not None:
            return identity
        if self._jwt is not None and looks_like_jwt(value):
            return await self._jwt.authenticate(value)
        if len(value) > MAX_KEY_LENGTH:  # neither a key nor a token: as without SSO
            raise AuthenticationError("Malformed Authorization header: expected 'Bearer <key>'.")
        raise AuthenticationError("Incorrect API key provided.")


def require_admin(identity: Identity) -> None:
    """Raise `PermissionDenied` unless the identity has the admin role."""
    if identity.role != "admin":
        raise PermissionDenied("This endpoint requires the admin role.")


def user_field(secret: str | None) -> Callable[[Identity], str]:
    """What `user` is sent upstream for an identity: its own name when `secret` is None
    (the config's `plain`), else its pseudonym under `secret`."""
    if secret is None:
        return lambda identity: identity.user
    return lambda identity: pseudonym(secret, identity.user)


def pseudonym(secret: str, user: str) -> str:
    """The `user` field sent upstream: HMAC-SHA256(secret, user id), hex."""
    return hmac.new(secret.encode("utf-8"), user.encode("utf-8"), hashlib.sha256).hexdigest()
