"""The identity sources' interface, `IdentitySource`, and what they share: `Identity`, the
one record every source produces, and what a request presents to them. Names they take
from outside follow `vocabulary.check_name`.

API keys, keys issued at run time, company SSO tokens and trusted proxy headers all resolve
to the same `Identity`, so quotas, the cache scope, the upstream `user` field and metrics
never ask where it came from. `source` is carried for the access log only and takes no
part in equality.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection

from gateway.errors import AuthenticationError

Role = Literal["user", "admin"]
Source = Literal["key", "jwt", "header"]


@dataclass(frozen=True)
class Identity:
    """Who is calling: the internal user id, their team and role."""

    user: str
    team: str
    role: Role = "user"
    source: Source = field(default="key", compare=False)
    issuer: str | None = field(default=None, compare=False)  # an SSO token's `iss` ...
    subject: str | None = field(default=None, compare=False)  # ... and its `sub`
    key_id: str | None = field(default=None, compare=False)  # a runtime key's id; "config"
    grace: bool = field(default=False, compare=False)  # a rotated key's old secret, in grace

    def credential(self) -> dict[str, str]:
        """What the audit says of the credential used: its kind; for a key its id (`config`
        for a key of the config), for an SSO token the issuer and subject that name the
        person whatever the user claim mapped to."""
        named = {"key_id": self.key_id, "issuer": self.issuer, "subject": self.subject}
        return {"source": self.source, **{k: v for k, v in named.items() if v is not None}}

    def log_fields(self) -> dict[str, str]:
        """What the access log says of the caller: never a key or a token."""
        return {"user": self.user, "team": self.team, "auth": self.source}


def known_team(
    team: str, teams: frozenset[str], default_team: str | None, unknown: str
) -> str | None:
    """`team` if it is a configured team; else `default_team` when the policy maps unknown
    teams there; else None (the caller is refused)."""
    if team in teams:
        return team
    return default_team if unknown == "default_team" else None


class Presented:
    """What a request presents to the identity sources: its TCP peer, its headers, and its
    bearer value, read when a source first asks for it."""

    def __init__(self, request: HTTPConnection, max_bearer: int) -> None:
        self.peer = request.client.host if request.client else None
        self.headers: Headers = request.headers
        self._max_bearer = max_bearer
        self._bearer: str | None = None

    def bearer(self) -> str:
        """The value of the one `Authorization: Bearer <value>` header; raises
        `AuthenticationError` when there is none, more than one, or it is malformed."""
        if self._bearer is None:
            presented = self.headers.getlist("authorization")
            if len(presented) > 1:  # which one counts would depend on who reads it
                raise AuthenticationError("More than one Authorization header: send one.")
            self._bearer = bearer_value(presented[0] if presented else None, self._max_bearer)
        return self._bearer


class IdentitySource(ABC):
    """One way of saying who is calling: an API key, a key issued at run time, an SSO
    token, a trusted proxy's headers."""

    bearer_limit = 0  # the longest bearer value it reads (0: it reads none)

    def vouches_for(self, peer: str | None) -> bool:
        """Whether it may name a caller from `peer` without an Authorization header."""
        return False

    def identities(self) -> list[Identity]:
        """The callers it can name ahead of any request (a key's owner), in its order; none
        for a source that learns of its callers one request at a time."""
        return []

    @abstractmethod
    async def identify(self, presented: Presented) -> Identity | None:
        """The caller, if this source recognises what `presented` carries; None lets the
        next source try. Raises `AuthenticationError` (401) when it recognises the request
        but refuses it, `IdentityProviderUnavailable` (503) when it cannot decide now."""


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
