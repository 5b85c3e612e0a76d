"""The Redis commands the stores send, as one small protocol, and what every Redis-backed
store shares: its Lua scripts, and driver failures turned into `StoreError`.

The stores speak only `RedisClient`: the handful of commands they use, which redis-py's
standalone client and its Cluster client both provide. connect.py opens one per URL, of
the topology the URL names, and shares it between the stores that name the same URL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from importlib import resources
from typing import Any, Protocol

from redis.exceptions import RedisClusterException, RedisError

from gateway.store.base import StoreError

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


def lua(name: str) -> str:
    """The text of the Lua script `name` (store/lua/), to register once per client."""
    return resources.files("gateway.store").joinpath("lua", name).read_text(encoding="utf-8")


async def call(awaitable: Any) -> Any:
    """Await a Redis command, turning every driver failure into `StoreError`."""
    try:
        return await awaitable
    # Not RedisErrors, yet driver failures: a slot no node covers, mid-failover, raises
    # RedisClusterException; and redis-py's cluster client (8.1) may tear down a connection
    # another command is still opening when a node fails, which surfaces as AttributeError.
    except (RedisError, RedisClusterException, OSError, AttributeError) as exc:
        raise StoreError(f"redis: {type(exc).__name__}") from exc
