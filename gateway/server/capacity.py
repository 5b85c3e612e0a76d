"""How many requests one gateway process can hold in flight, and the file descriptors for it.

With image models answering in 10 to 60 s, most requests in flight are waiting on the
upstream, and each holds two sockets: the caller's and its upstream connection. So what
one process can hold is the least of its in-flight limit (`limits.max_concurrent_requests`),
its upstream pool (`upstream.max_connections`) and half the file descriptors it may open,
less a reserve for everything else (the listening socket, Redis pools, the IdP client,
logs). `gateway serve` raises its soft `RLIMIT_NOFILE` to the hard limit first: the
default soft limit (often 1,024) would hold about 480.
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.settings.config import GatewayConfig

FD_RESERVE = 64
SOCKETS_PER_REQUEST = 2
_UNLIMITED = 1 << 20


class NoFile(NamedTuple):
    """The process's limit on open files: before and after raising it."""

    was: int
    now: int


def nofile_limits() -> NoFile | None:
    """The soft `RLIMIT_NOFILE` now, and what `raise_nofile` would raise it to; None where
    there are no rlimits."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return NoFile(_UNLIMITED, _UNLIMITED)
    # An unlimited hard limit is refused as a soft value by Linux: take a large finite one.
    target = _UNLIMITED if hard == resource.RLIM_INFINITY else hard
    return NoFile(soft, max(soft, target))


def raise_nofile() -> NoFile | None:
    """Raise the soft `RLIMIT_NOFILE` to the hard limit: the limits before and after."""
    limits = nofile_limits()
    if limits is None or limits.now == limits.was:
        return limits
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.now, hard))
    except (ValueError, OSError):
        return NoFile(limits.was, limits.was)
    return limits


def in_flight(config: GatewayConfig, nofile: int | None) -> tuple[int, str]:
    """The requests one process can hold in flight, and which limit decides it."""
    bounds = {}
    if config.limits.max_concurrent_requests is not None:
        bounds["limits.max_concurrent_requests"] = config.limits.max_concurrent_requests
    bounds["upstream.max_connections"] = config.upstream.max_connections
    if nofile is not None:
        bounds["open files"] = max(0, (nofile - FD_RESERVE) // SOCKETS_PER_REQUEST)
    name = min(bounds, key=lambda key: bounds[key])
    return bounds[name], name


def describe(config: GatewayConfig, nofile: int | None) -> str:
    """One line for start-up and `config check`: what one process can hold, and why."""
    count, bound = in_flight(config, nofile)
    files = "unknown" if nofile is None else f"{nofile:,}"
    line = (
        f"capacity: {count:,} requests in flight per process (bound by {bound}; "
        f"open files {files}, {SOCKETS_PER_REQUEST} per request + {FD_RESERVE})"
    )
    limit = config.limits.max_concurrent_requests
    if limit is not None and count < limit:
        line += f"; raise the bound to reach limits.max_concurrent_requests ({limit:,})"
    return line
