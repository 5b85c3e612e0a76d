"""Redis URLs and how to reach what they name: parsed without a client, so the config can
check them without loading redis-py (`connect.py` builds the clients from these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import unquote

DEFAULT_PORT = 6379


@dataclass(frozen=True)
class TlsFiles:
    """The CA to trust, the client's own certificate (for servers that ask for one), and
    whether the server's name must match its certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach a Redis beyond its URL; secrets are kept out of the repr."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: TlsFiles | None = None
    # How long a Cluster command may take, its retries through a failover included.
    wait_seconds: float = 1.0


class Target(NamedTuple):
    """A parsed URL: the topology, whether it speaks TLS, the hosts and the path's names."""

    topology: str  # standalone | sentinel | cluster
    tls: bool
    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    names: tuple[str, ...]  # sentinel: (service[, db]); standalone: (db,) or ()


_SCHEMES = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "unix": ("standalone", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}


def _host(part: str) -> tuple[str, int]:
    if part.startswith("["):  # [IPv6]:port
        host, _, port = part[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = part.partition(":")
    port = port or str(DEFAULT_PORT)
    if not host or not port.isdigit():
        raise ValueError(f"the host {part!r} is not host:port")
    return host, int(port)


def parse_url(url: str) -> Target:
    """The URL's parts; raises `ValueError` naming the problem (never quoting a password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        known = ", ".join(f"{name}://" for name in _SCHEMES)
        raise ValueError(f"not a Redis URL (the scheme must be one of {known})")
    topology, tls = _SCHEMES[scheme.lower()]
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    user, _, password = userinfo.partition(":") if at else ("", "", "")
    if scheme.lower() == "unix":
        return Target(topology, tls, (), unquote(user) or None, unquote(password) or None, ())
    hosts = tuple(_host(part) for part in hostlist.split(",") if part)
    if not hosts:
        raise ValueError("the URL names no host")
    names = tuple(name for name in path.partition("?")[0].split("/") if name)
    if topology == "standalone" and len(hosts) > 1:
        raise ValueError(f"several hosts need redis+cluster:// or redis+sentinel://, not {scheme}")
    _check_names(topology, names)
    return Target(topology, tls, hosts, unquote(user) or None, unquote(password) or None, names)


# The path each topology takes, as the URL's forms say it (the module docstring of connect.py).
_PATHS = {
    "standalone": "the database must be a number: use redis://host:port[/<db>]",
    "sentinel": "the database must be a number: use "
    "redis+sentinel://host:port[,host:port...]/<service>[/<db>]",
    "cluster": "a Cluster has only database 0: use redis+cluster://host:port[,host:port...]",
}


def _check_names(topology: str, names: tuple[str, ...]) -> None:
    """The path's names fit the topology, and a database is a number: redis-py would read
    `/abc` as database 0 and a Sentinel's `/mymaster/abc` would fail at the first connection."""
    if topology == "sentinel" and not names:
        raise ValueError(
            "a Sentinel URL names its service: redis+sentinel://host:port/<service>[/<db>]"
        )
    databases = names[1:] if topology == "sentinel" else names
    fits = len(databases) <= 1 and all(db.isascii() and db.isdigit() for db in databases)
    if topology == "cluster":
        fits = fits and all(int(db) == 0 for db in databases)
    if not fits:
        raise ValueError(_PATHS[topology])
