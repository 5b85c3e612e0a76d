"""Redis connection forms: one server, a Sentinel-managed primary, or a Cluster; TLS and ACL.

The URL's scheme picks the topology (limits' storage registry is the model):

    redis://[user:pass@]host:port/db      rediss://...  (TLS)      unix:///path.sock
    redis+sentinel://[user:pass@]host:port[,host:port...]/service[/db]   rediss+sentinel://
    redis+cluster://[user:pass@]host:port[,host:port...]                 rediss+cluster://

Credentials in the URL are the data nodes'; `ConnectOptions` may override them (from the
environment) and carries the Sentinels' own credentials and the TLS files. Every client
gets short timeouts, so an unreachable Redis fails fast, and queues a burst at its pool's
size instead of failing it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from gateway.store.client import POOL_SIZE, SOCKET_TIMEOUT_SECONDS, RedisClient
from gateway.store.urls import ConnectOptions, Target, TlsFiles, parse_url

TIMEOUTS = {
    "socket_timeout": SOCKET_TIMEOUT_SECONDS,
    "socket_connect_timeout": SOCKET_TIMEOUT_SECONDS,
}


def tls_kwargs(target: Target, options: ConnectOptions) -> dict[str, Any]:
    if not target.tls:
        return {}
    tls = options.tls or TlsFiles()
    return {
        "ssl_ca_certs": tls.ca_file,
        "ssl_certfile": tls.cert_file,
        "ssl_keyfile": tls.key_file,
        "ssl_check_hostname": tls.check_hostname,
    }


def auth_kwargs(target: Target, options: ConnectOptions) -> dict[str, Any]:
    return {
        "username": options.username or target.username,
        "password": options.password or target.password,
    }


def _node_kwargs(target: Target, options: ConnectOptions) -> dict[str, Any]:
    """What every data-node connection gets: timeouts, RESP2, auth and TLS.

    RESP2: under RESP3, redis-py 8 turns on maintenance notifications ("auto"), which skips
    its check-out test for connections the server has closed; after a Redis restart every
    pooled connection would then fail one request before reconnecting.
    """
    return {
        **TIMEOUTS,
        "protocol": 2,
        **auth_kwargs(target, options),
        **tls_kwargs(target, options),
    }


def _standalone(url: str, target: Target, options: ConnectOptions) -> RedisClient:
    """One server, through a pool that blocks (briefly) when all its connections are busy: a
    burst waits for a connection instead of failing, and Redis never sees more than the
    pool's size."""
    kwargs = {k: v for k, v in _node_kwargs(target, options).items() if v is not None}
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_SIZE, timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30, **kwargs,
    )  # fmt: skip
    return redis.Redis.from_pool(pool)


class _BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """The Sentinel-managed pool, queueing a burst at its size as the standalone one does."""


class _SentinelPrimary(redis.Redis):
    """The primary a Sentinel group names; closing it closes the Sentinel clients too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        pool = self.connection_pool
        await super().aclose(close_connection_pool)
        if isinstance(pool, SentinelConnectionPool):
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()


def _sentinel(url: str, target: Target, options: ConnectOptions) -> RedisClient:
    """The primary of the service the Sentinels monitor; a failover moves it transparently
    (each new connection asks the Sentinels where the primary is now)."""
    ssl = {"ssl": True} if target.tls else {}
    db = {"db": int(target.names[1])} if len(target.names) > 1 else {}
    own = {"username": options.sentinel_username, "password": options.sentinel_password}
    sentinel_kwargs = {**TIMEOUTS, **own, **tls_kwargs(target, options), **ssl}
    # One mapping of the primary's connection options: its values are of several types, and
    # redis-py (8.2 on) types each keyword of `Sentinel` it could land on.
    node_kwargs: dict[str, Any] = {**_node_kwargs(target, options), **ssl, **db}
    manager = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs, **node_kwargs)
    return manager.master_for(  # type: ignore[no-any-return]
        target.names[0],
        redis_class=_SentinelPrimary,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=POOL_SIZE,
        timeout=SOCKET_TIMEOUT_SECONDS,
    )


class _GatedCluster(RedisCluster):
    """A Cluster client with at most `POOL_SIZE` commands in flight: redis-py's cluster pool
    refuses a command past its size (MaxConnectionsError) where the others queue.

    Each command first waits for the slot map: redis-py (8.1) looks up a command's routing
    before it reads the map, and concurrent first commands then share one half-open
    connection (AttributeError, not a RedisError).

    Once sent, a command gets `wait_seconds` (retries included): through a failover redis-py
    retries a dead primary's slot, with backoff and refreshes of the map, for several
    seconds, where a Sentinel's client fails at once. Past the wait it raises TimeoutError
    (an OSError: a `StoreError` to the stores, whose callers get `store.on_error`'s answer;
    a charge whose reply never came is taken back by its receipt).
    """

    def __init__(self, wait_seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gate = asyncio.Semaphore(POOL_SIZE)
        self._wait_seconds = wait_seconds

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._gate, asyncio.timeout(self._wait_seconds):
            await self.initialize()  # returns at once once the map is read
            return await super().execute_command(*args, **kwargs)


def _cluster(url: str, target: Target, options: ConnectOptions) -> RedisClient:
    """A Cluster from its startup nodes; redis-py follows MOVED and ASK and re-reads the
    slot map when the topology changes (a failover, a reshard)."""
    return _GatedCluster(
        options.wait_seconds,
        startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
        max_connections=POOL_SIZE,
        **({"ssl": True} if target.tls else {}),
        **_node_kwargs(target, options),
    )


OPENERS: dict[str, Callable[[str, Target, ConnectOptions], RedisClient]] = {
    "standalone": _standalone,
    "sentinel": _sentinel,
    "cluster": _cluster,
}


def connect(url: str, options: ConnectOptions | None = None) -> RedisClient:
    """A client for `url`, of the topology its scheme names; raises `ValueError` for a URL
    that is not a Redis URL."""
    options = options or ConnectOptions()
    target = parse_url(url)
    return OPENERS[target.topology](url, target, options)


class Connections:
    """One client per distinct URL (and options), shared by every store that names it.

    A shared client is closed by whichever of its stores closes first; closing is idempotent,
    and the composition root closes the stores only once nothing uses them any more.
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[str, ConnectOptions], RedisClient] = {}

    def client(self, url: str, options: ConnectOptions | None = None) -> RedisClient:
        """The client for `url`, opened on first use."""
        key = (url, options or ConnectOptions())
        if key not in self._clients:
            self._clients[key] = connect(url, key[1])
        return self._clients[key]
