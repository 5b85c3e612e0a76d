"""Every store backend behind one fixture: each contract test runs on memory and on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.store.base import CacheStore, Store
from gateway.store.memory import MemoryCacheStore, MemoryStore
from gateway.store.redis import RedisCacheStore, RedisStore, connect

START = 1_795_305_600.0  # 2026-11-22T00:00:00Z: a day, hour and minute boundary


class FakeClock:
    """A clock tests move by hand, so windows roll over without sleeping."""

    def __init__(self, now: float = START + 30) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
