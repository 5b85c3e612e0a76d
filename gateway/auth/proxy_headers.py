"""Identity asserted by an authenticating proxy in request headers -> `Identity`.

The headers are believed only when the TCP peer (the ASGI `client` address; uvicorn runs
with `proxy_headers=False`, so `X-Forwarded-For` cannot change it) is inside one of the
configured proxy networks. From any other address they are ignored, as if absent: the
caller must then authenticate with a bearer token like everyone else.
"""

from __future__ import annotations

import ipaddress

from starlette.datastructures import Headers

from gateway.auth.base import Identity, IdentitySource, Presented, known_team
from gateway.errors import AuthenticationError
from gateway.settings.identity import TrustedHeaderConfig
from gateway.vocabulary import NAME_RULE, external_name

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def peer_address(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer's IP address (IPv4-mapped IPv6 unwrapped), or None if it is not an address."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return None  # e.g. a Unix socket, or Starlette's TestClient ("testclient")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedHeaders(IdentitySource):
    """Reads user, team and role headers set by a proxy in `config.proxies`."""

    def __init__(self, config: TrustedHeaderConfig, teams: frozenset[str] | None = None) -> None:
        self._config, self._teams = config, teams  # teams: the configured ones (None: any)
        self._networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(cidr) for cidr in config.proxies
        )
        self._admin_values = {value.strip().lower() for value in config.admin_values}

    def vouches_for(self, peer: str | None) -> bool:
        """Whether `peer` (the TCP peer) is one of the trusted proxies."""
        address = peer_address(peer)
        return address is not None and any(address in network for network in self._networks)

    async def identify(self, presented: Presented) -> Identity | None:
        return self.identity(presented.headers, presented.peer)

    def identity(self, headers: Headers, peer: str | None) -> Identity | None:
        """The asserted identity; None when the peer is untrusted or sent no user header.

        Raises `AuthenticationError` when a trusted proxy's headers are unusable.
        """
        if not self.vouches_for(peer):
            return None
        user = self._single(headers, self._config.user_header)
        if not user:
            return None  # the proxy let a bearer-token caller through
        team = self._team(headers)
        return Identity(
            self._name(user, self._config.user_header, "user id"),
            team,
            "admin" if self._is_admin(headers) else "user",
            source="header",
        )

    def _team(self, headers: Headers) -> str:
        name = self._config.team_header
        value = self._single(headers, name) if name else None
        if value is not None and name is not None:
            named = self._name(value, name, "team")
            if self._teams is None:
                return named
            config = self._config
            team = known_team(named, self._teams, config.default_team, config.unknown_team)
            if team is None:
                raise AuthenticationError(
                    f"The trusted proxy's {name} header names no team of this gateway."
                )
            return team
        if self._config.default_team:
            return self._config.default_team
        raise AuthenticationError(f"The trusted proxy sent no {name} header (team).")

    def _is_admin(self, headers: Headers) -> bool:
        name = self._config.role_header
        value = self._single(headers, name) if name else None
        if value is None:
            return False
        return bool({part.strip().lower() for part in value.split(",")} & self._admin_values)

    @staticmethod
    def _single(headers: Headers, name: str) -> str | None:
        """The header's one value; two values mean the proxy appended instead of replacing."""
        values = headers.getlist(name)
        if len(values) > 1:
            raise AuthenticationError(f"The trusted proxy sent the {name} header twice.")
        return values[0] if values else None

    @staticmethod
    def _name(value: str, header: str, what: str) -> str:
        usable = external_name(value.strip())
        if usable is None:
            raise AuthenticationError(
                f"The trusted proxy's {header} header is not a usable {what} ({NAME_RULE})."
            )
        return usable
