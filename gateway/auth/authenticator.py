"""A request -> `Identity`: the one place that decides who is calling.

`Authenticator` asks its identity sources in turn (`base.IdentitySource`); the composition
root lists them in this order:

1. trusted proxy headers, if configured and the TCP peer is one of the proxies
   (`proxy_headers.py`);
2. the bearer value as a gateway API key of the config, then as one issued at run time
   (`keys.py`: looked up by digest, no I/O);
3. the bearer value as a company SSO token, if configured and it has a JWT's shape
   (`oidc.py`, keys from `jwks.py`).

Each yields the same `Identity`. A JWT caller never waits on the IdP unless their token's
key is unknown, and an API-key caller never touches the IdP at all.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

from starlette.requests import HTTPConnection

from gateway.auth.base import Identity, IdentitySource, Presented
from gateway.auth.keys import MAX_KEY_LENGTH
from gateway.errors import AuthenticationError, PermissionDenied


class Authenticator:
    """Every configured identity source, asked in turn until one names the caller."""

    def __init__(self, sources: Sequence[IdentitySource]) -> None:
        self._sources = tuple(sources)
        # The bearer value may be as long as the longest any source reads (an SSO token's).
        self._max_bearer = max((s.bearer_limit for s in self._sources), default=MAX_KEY_LENGTH)

    def identities(self) -> list[Identity]:
        """Every identity a key opens: the configured principals, then the users of live
        runtime keys, each once (callers known only to the IdP or a proxy are not)."""
        return list(dict.fromkeys(i for source in self._sources for i in source.identities()))

    def needs_bearer(self, peer: str | None) -> bool:
        """Whether a request from `peer` can only be authenticated by an Authorization header
        (no trusted proxy may name its caller in other headers)."""
        return not any(source.vouches_for(peer) for source in self._sources)

    async def authenticate(self, request: HTTPConnection) -> Identity:
        """The caller of `request`; raises `AuthenticationError` (401), or
        `IdentityProviderUnavailable` (503) when a token's key cannot be fetched now.
        """
        presented = Presented(request, self._max_bearer)
        for source in self._sources:
            identity = await source.identify(presented)
            if identity is not None:
                return identity
        if len(presented.bearer()) > MAX_KEY_LENGTH:  # neither a key nor a token: as without SSO
            raise AuthenticationError("Malformed Authorization header: expected 'Bearer <key>'.")
        raise AuthenticationError("Incorrect API key provided.")


def require_admin(identity: Identity) -> None:
    """Raise `PermissionDenied` unless the identity has the admin role, through a credential
    that is not a rotated key's old secret (in its grace period it serves traffic only)."""
    if identity.role != "admin":
        raise PermissionDenied("This endpoint requires the admin role.")
    if identity.grace:
        raise PermissionDenied(
            "This is the old secret of a rotated key: during its grace period it serves "
            "traffic only, never admin calls. Use the key's new secret."
        )


def user_field(secret: str | None) -> Callable[[Identity], str]:
    """What `user` is sent upstream for an identity: its own name when `secret` is None
    (the config's `plain`), else its pseudonym under `secret`."""
    if secret is None:
        return lambda identity: identity.user
    return lambda identity: pseudonym(secret, identity.user)


def pseudonym(secret: str, user: str) -> str:
    """The `user` field sent upstream: HMAC-SHA256(secret, user id), hex."""
    return hmac.new(secret.encode("utf-8"), user.encode("utf-8"), hashlib.sha256).hexdigest()
