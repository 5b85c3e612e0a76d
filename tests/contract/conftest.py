"""Every store backend behind one fixture: each contract test runs on memory, a standalone
Redis, a 3-primary/3-replica Redis Cluster and a Sentinel-managed primary."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from support.clock import FakeClock

from gateway.admin.store import AdminStore, MemoryAdminStore, RedisAdminStore
from gateway.store.base import KEY_PREFIX, CacheStore, Store
from gateway.store.connect import connect
from gateway.store.memory import MemoryCacheStore, MemoryStore
from gateway.store.redis import RedisCacheStore, RedisStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


REDIS_BACKENDS = ["redis", "cluster", "sentinel"]


def redis_backend_url(request: pytest.FixtureRequest, kind: str) -> str:
    """The URL of a real Redis of topology `kind`, with the gateway's keys wiped around the test."""
    if kind == "redis":
        return str(request.getfixturevalue("clean_redis"))
    group = request.getfixturevalue(f"redis_{kind}")
    group.wipe(f"{KEY_PREFIX}:*")
    request.addfinalizer(lambda: group.wipe(f"{KEY_PREFIX}:*"))
    return str(group.url)


@pytest.fixture(params=["memory", *REDIS_BACKENDS])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Store]:
    """The store under contract, on the injected clock."""
    if request.param == "memory":
        yield MemoryStore(clock=clock)
        return
    backend = RedisStore(connect(redis_backend_url(request, request.param)), clock=clock)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(params=["memory", *REDIS_BACKENDS])
async def cache_store(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[CacheStore]:
    """The cache store under contract."""
    if request.param == "memory":
        yield MemoryCacheStore(clock=clock)
        return
    backend = RedisCacheStore(connect(redis_backend_url(request, request.param)))
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
async def books(store: Store, request: pytest.FixtureRequest) -> AsyncIterator[AdminStore]:
    """The admin store's reader of the usage books, on the same backend as `store`."""
    if isinstance(store, MemoryStore):
        yield MemoryAdminStore(lambda: store.books)
        return
    kind = request.node.callspec.params["store"]
    client = connect(_url(request, kind))
    assert isinstance(client, aioredis.Redis | RedisCluster)
    reader = RedisAdminStore(client)
    try:
        yield reader
    finally:
        await reader.close()


def _url(request: pytest.FixtureRequest, kind: str) -> str:
    """The URL of the Redis of topology `kind` the `store` fixture opened (no new wipe)."""
    if kind == "redis":
        return str(request.getfixturevalue("clean_redis"))
    return str(request.getfixturevalue(f"redis_{kind}").url)
