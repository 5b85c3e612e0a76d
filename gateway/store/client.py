"""The Redis commands the stores send, as one small protocol, and what every Redis-backed
store shares: its Lua scripts, and driver failures turned into `StoreError`.

The stores speak only `RedisClient`: the handful of commands they use, which redis-py's
standalone client and its Cluster client both provide. connect.py opens one per URL, of
the topology the URL names, and shares it between the stores that name the same URL.
"""

from __future__ import annotations

import ssl
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


# What to do about each certificate problem OpenSSL names (its verify message, lower case).
_CERT_HINTS = (
    ("mismatch", "reach it by a name its certificate names, or set tls.check_hostname: false"),
    ("expired", "the server needs a new certificate"),
    ("not yet valid", "the server's certificate starts later (check the clocks)"),
    ("issuer", "tls.ca_file must be the CA that signed the server's certificate"),
    ("self-signed", "tls.ca_file must be the CA that signed the server's certificate"),
    ("signature", "tls.ca_file must be the CA that signed the server's certificate"),
)


def certificate_problem(exc: BaseException, where: str) -> str | None:
    """One line naming why `where`'s certificate was refused (with what to do), or None if
    `exc` is no certificate failure."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    reason = str(getattr(cause, "verify_message", "") or cause.reason or "verify failed")
    hint = next((hint for key, hint in _CERT_HINTS if key in reason.lower()), None)
    return f"{where}: TLS certificate refused: {reason}" + (f" ({hint})" if hint else "")


async def call(awaitable: Any) -> Any:
    """Await a Redis command, turning every driver failure into `StoreError` (one that
    names the certificate problem when TLS refused the server, for the logs to say so)."""
    try:
        return await awaitable
    # Not RedisErrors, yet driver failures: a slot no node covers, mid-failover, raises
    # RedisClusterException; and redis-py's cluster client (8.1) may tear down a connection
    # another command is still opening when a node fails, which surfaces as AttributeError.
    except (RedisError, RedisClusterException, OSError, AttributeError) as exc:
        problem = certificate_problem(exc, "redis")
        if problem is not None:
            raise StoreError(problem) from None
        raise StoreError(f"redis: {type(exc).__name__}") from exc
