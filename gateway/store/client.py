"""The Redis commands the stores send, as one small protocol, and one client per URL.

The stores speak only `RedisClient`: the handful of commands they use, which redis-py's
standalone client and its Cluster client both provide. `Connections` opens one client per
distinct URL and hands it to every store that names that URL, so the quota store and the
cache share one pool when they share one Redis.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import redis.asyncio as redis

SOCKET_TIMEOUT_SECONDS = 2.0
POOL_SIZE = 64  # per process (per node on a Cluster); a quota step holds one for ~0.1 ms


class Script(Protocol):
    """A Lua script registered once and run by its SHA (loaded again if the server lost it)."""

    def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Awaitable[Any]:
        """Run the script on the node that holds `keys` (all in one slot)."""


class RedisClient(Protocol):
    """The commands the stores send, and nothing else."""

    def register_script(self, script: str) -> Script:
        """The script, to be run with its keys and arguments."""

    def get(self, name: str) -> Awaitable[Any]:
        """GET."""

    def set(self, name: str, value: bytes, ex: int | None = None) -> Awaitable[Any]:
        """SET with a TTL in seconds."""

    def exists(self, *names: str) -> Awaitable[Any]:
        """EXISTS."""

    def mget(self, keys: Sequence[str]) -> Awaitable[Any]:
        """MGET of keys that share one slot."""

    def ping(self) -> Awaitable[Any]:
        """PING."""

    def time(self) -> Awaitable[Any]:
        """TIME: (seconds, microseconds) on the server's clock."""

    async def aclose(self) -> None:
        """Release the client's connections (idempotent)."""


def _standalone(url: str) -> RedisClient:
    """One server: a pool that blocks (briefly) when all its connections are busy, so a burst
    of requests waits for a connection instead of failing, and Redis never sees more than
    the pool's size."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=SOCKET_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
        # RESP2: under RESP3, redis-py 8 turns on maintenance notifications ("auto"), which
        # skips its check-out test for connections the server has closed; after a Redis
        # restart every pooled connection would then fail one request before reconnecting.
        protocol=2,
    )
    return redis.Redis.from_pool(pool)


# The URL's scheme picks the client (limits' storage registry is the model).
OPENERS: dict[str, Callable[[str], RedisClient]] = {
    "redis": _standalone,
    "rediss": _standalone,
    "unix": _standalone,
}


def connect(url: str) -> RedisClient:
    """A client for `url`, with short timeouts so an unreachable Redis fails fast."""
    scheme = url.partition("://")[0].lower()
    opener = OPENERS.get(scheme)
    if opener is None:
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}")
    return opener(url)


class Connections:
    """One client per distinct URL, shared by every store that names it.

    A shared client is closed by whichever of its stores closes first; closing is idempotent,
    and the composition root closes the stores only once nothing uses them any more.
    """

    def __init__(self) -> None:
        self._clients: dict[str, RedisClient] = {}

    def client(self, url: str) -> RedisClient:
        """The client for `url`, opened on first use."""
        if url not in self._clients:
            self._clients[url] = connect(url)
        return self._clients[url]
