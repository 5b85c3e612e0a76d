"""The cache-store contract, on memory and on a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.base import CacheStore

pytestmark = pytest.mark.anyio
KEY = "gw:v1:cache:{test}"


async def test_entries_round_trip(cache_store: CacheStore) -> None:
    """What is put is got back byte for byte; unknown keys are None."""
    await cache_store.put_entry(KEY, b"\x00body\xff", 60)
    assert await cache_store.get_entry(KEY) == b"\x00body\xff"
    assert await cache_store.get_entry(KEY + ":other") is None


async def test_only_one_of_many_acquires_a_lock(cache_store: CacheStore) -> None:
    """Of 20 concurrent acquirers exactly one leads."""
    results = await asyncio.gather(
        *(cache_store.acquire(KEY + ":lock", f"t{i}", 5000) for i in range(20))
    )
    assert results.count(True) == 1
    assert await cache_store.locked(KEY + ":lock")


async def test_only_the_holder_releases(cache_store: CacheStore) -> None:
    """A release with another token leaves the lock held; the holder's frees it."""
    lock = KEY + ":lock"
    assert await cache_store.acquire(lock, "mine", 5000)
    await cache_store.release(lock, "theirs")
    assert await cache_store.locked(lock)
    await cache_store.release(lock, "mine")
    assert not await cache_store.locked(lock)
    assert await cache_store.acquire(lock, "next", 5000)


async def test_memory_entries_and_locks_expire_on_the_clock(clock) -> None:
    """TTLs are honoured by the injected clock (Redis expiry is Redis's own)."""
    from gateway.store.memory import MemoryCacheStore

    store = MemoryCacheStore(clock=clock)
    await store.put_entry(KEY, b"x", 10)
    assert await store.acquire(KEY + ":lock", "t", 2000)
    clock.advance(3)
    assert not await store.locked(KEY + ":lock")
    clock.advance(7)
    assert await store.get_entry(KEY) is None
