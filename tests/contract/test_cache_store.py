"""The cache-store contract, on memory and on a real Redis."""

from __future__ import annotations

import asyncio

import pytest
from support.clock import FakeClock

from gateway.store.base import CacheStore

pytestmark = pytest.mark.anyio
KEY = "gw:v1:cache:{test}"


async def test_entries_round_trip(cache_store: CacheStore) -> None:
    """What is put is got back byte for byte; unknown keys are None."""
    await cache_store.put_entry(KEY, b"\x00body\xff", 60)
    assert await cache_store.get_entry(KEY) == b"\x00body\xff"
    assert await cache_store.get_entry(KEY + ":other") is None


async def test_only_one_of_many_acquires_a_lock(cache_store: CacheStore) -> None:
    """Of 20 concurrent misses bidding to lead exactly one takes the lock."""
    results = await asyncio.gather(
        *(cache_store.get_or_lock(KEY, KEY + ":lock", f"t{i}", 5000) for i in range(20))
    )
    assert results.count(True) == 1 and results.count(False) == 19
    assert await cache_store.locked(KEY + ":lock")


async def test_only_the_holder_releases(cache_store: CacheStore) -> None:
    """A release with another token leaves the lock held; the holder's frees it."""
    lock = KEY + ":lock"
    assert await cache_store.get_or_lock(KEY, lock, "mine", 5000) is True
    await cache_store.release(lock, "theirs")
    assert await cache_store.locked(lock)
    await cache_store.release(lock, "mine")
    assert not await cache_store.locked(lock)
    assert await cache_store.get_or_lock(KEY, lock, "next", 5000) is True


async def test_a_hit_takes_no_lock(cache_store: CacheStore) -> None:
    """When the entry exists, the bid to lead returns it and leaves the lock alone."""
    await cache_store.put_entry(KEY, b"entry", 60)
    assert await cache_store.get_or_lock(KEY, KEY + ":lock", "t", 5000) == b"entry"
    assert not await cache_store.locked(KEY + ":lock")


async def test_put_and_release_stores_and_frees_only_the_holders_lock(
    cache_store: CacheStore,
) -> None:
    """The leader's last step stores the entry and drops its own lock, never another's."""
    lock = KEY + ":lock"
    assert await cache_store.get_or_lock(KEY, lock, "leader", 5000) is True
    await cache_store.put_and_release(KEY, b"answer", 60, lock, "impostor")
    assert await cache_store.get_entry(KEY) == b"answer"
    assert await cache_store.locked(lock)
    await cache_store.put_and_release(KEY, b"answer", 60, lock, "leader")
    assert not await cache_store.locked(lock)


async def test_memory_entries_and_locks_expire_on_the_clock(clock: FakeClock) -> None:
    """TTLs are honoured by the injected clock (Redis expiry is Redis's own)."""
    from gateway.store.memory import MemoryCacheStore

    store = MemoryCacheStore(clock=clock)
    await store.put_entry(KEY, b"x", 10)
    assert await store.get_or_lock(KEY + ":other", KEY + ":lock", "t", 2000) is True
    clock.advance(3)
    assert not await store.locked(KEY + ":lock")
    clock.advance(7)
    assert await store.get_entry(KEY) is None
