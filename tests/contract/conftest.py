"""Every store backend behind one fixture: each contract test runs on memory and on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support.clock import FakeClock

from gateway.store.base import CacheStore, Store
from gateway.store.client import connect
from gateway.store.memory import MemoryCacheStore, MemoryStore
from gateway.store.redis import RedisCacheStore, RedisStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Store]:
    """The store under contract, on the injected clock."""
    if request.param == "memory":
        yield MemoryStore(clock=clock)
        return
    redis_url = request.getfixturevalue("clean_redis")
    backend = RedisStore(connect(redis_url), clock=clock)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(params=["memory", "redis"])
async def cache_store(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[CacheStore]:
    """The cache store under contract."""
    if request.param == "memory":
        yield MemoryCacheStore(clock=clock)
        return
    backend = RedisCacheStore(connect(request.getfixturevalue("clean_redis")))
    try:
        yield backend
    finally:
        await backend.close()
