"""Bearer token -> `Identity`.

Keys are never stored: the config holds their SHA-256, and a presented key is hashed and
looked up by digest. The lookup is over digests of attacker-chosen input, so its timing
reveals nothing about any stored key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from gateway.errors import AuthenticationError, PermissionDenied
from gateway.settings import PrincipalConfig

Role = Literal["user", "admin"]
MAX_KEY_LENGTH = 512


@dataclass(frozen=True)
class Identity:
    """Who is calling: the internal user id, their team and role."""

    user: str
    team: str
    role: Role = "user"


def key_digest(key: str) -> str:
    """The SHA-256 hex digest under which a key is configured."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyAuthenticator:
    """Resolves `Authorization: Bearer <key>` against the configured principals."""

    def __init__(self, principals: Iterable[PrincipalConfig], demo_key: str | None = None) -> None:
        self._by_digest = {p.key_sha256: Identity(p.user, p.team, p.role) for p in principals}
        if demo_key:
            self._by_digest[key_digest(demo_key)] = Identity("demo", "demo")

    def identities(self) -> list[Identity]:
        """Every configured identity, ordered by user."""
        return sorted(self._by_digest.values(), key=lambda identity: identity.user)

    def authenticate(self, authorization: str | None) -> Identity:
        """The caller's identity; raises `AuthenticationError` for a missing or unknown key."""
        if not authorization:
            raise AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
            )
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key or len(key) > MAX_KEY_LENGTH:
            raise AuthenticationError("Malformed Authorization header: expected 'Bearer <key>'.")
        identity = self._by_digest.get(key_digest(key))
        if identity is None:
            raise AuthenticationError("Incorrect API key provided.")
        return identity


def require_admin(identity: Identity) -> None:
    """Raise `PermissionDenied` unless the identity has the admin role."""
    if identity.role != "admin":
        raise PermissionDenied("This endpoint requires the admin role.")


def pseudonym(secret: str, user: str) -> str:
    """The `user` field sent upstream: HMAC-SHA256(secret, user id), hex."""
    return hmac.new(secret.encode("utf-8"), user.encode("utf-8"), hashlib.sha256).hexdigest()
