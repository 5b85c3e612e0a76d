"""The in-process store: one process only, state lost on restart. For local runs and tests.

Counters live in a dict; their check-and-charge has no await inside, so it runs as one
step of the event loop: atomic without a lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence

from gateway.store.base import (
    ChargeItem,
    ChargeOutcome,
    Clock,
    Crossed,
    Receipt,
    UsageCharge,
)

DEFAULT_BUDGET = 256 * 1024 * 1024  # bytes of cached answers and hosted images
_SWEEP_AT = 10_000  # counters held before expired ones are swept


class MemoryStore:
    """Implements `Store` in process memory."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._counters: dict[str, tuple[float, int]] = {}  # key -> (expires_at, value)
        self.books: dict[str, dict[str, int]] = {}  # chargeback usage: key -> field -> amount

    def clock(self, tag: str = "") -> float:
        return self._clock()

    def _value(self, key: str, now: float) -> int:
        entry = self._counters.get(key)
        if entry is None or entry[0] <= now:
            self._counters.pop(key, None)
            return 0
        return entry[1]

    # No await inside: each of these runs as one step of the event loop, hence atomically.
    async def charge(
        self,
        items: Sequence[ChargeItem],
        receipt: Receipt | None = None,
        usage: UsageCharge | None = None,
    ) -> ChargeOutcome | None:
        now = self._clock()
        within = usage.within if usage is not None else None
        if any(not item.start <= now < item.end for item in items) or (
            within is not None and not within[0] <= now < within[1]
        ):
            return None
        used = [self._value(item.key, now) for item in items]
        refused = [
            i
            for i, item in enumerate(items)
            if item.amount > 0 and used[i] + item.amount > item.limit
        ]
        if refused:
            return ChargeOutcome(False, used, refused, now, self._alerts(items, used, refused))
        for i, item in enumerate(items):
            if item.amount > 0:
                used[i] += item.amount
                self._counters[item.key] = (item.end + 60, used[i])
        crossed = self._alerts(items, used, [])
        if receipt is not None:
            self._counters[receipt.key] = (now + receipt.ttl_ms / 1000, 1)
        self._add_usage(usage, 1)
        if len(self._counters) > _SWEEP_AT:
            self._counters = {k: v for k, v in self._counters.items() if v[0] > now}
        return ChargeOutcome(True, used, [], now, crossed)

    def _alerts(
        self, items: Sequence[ChargeItem], used: Sequence[int], walls: Sequence[int]
    ) -> list[Crossed]:
        """As charge.lua: each item's alert level, and the rises over its marker."""
        crossed = []
        for i, item in enumerate(items):
            if not item.thresholds:
                continue
            reached = [t for t in item.thresholds if used[i] * 100 >= t * item.limit]
            level = 100 if i in walls else max(reached, default=0)
            before = self._value(item.marker, self._clock())
            if level > before:
                self._counters[item.marker] = (item.end + 60, level)
                crossed.append(Crossed(i, before, level))
        return crossed

    async def refund(
        self,
        items: Sequence[tuple[str, int]],
        receipt: str | None = None,
        usage: UsageCharge | None = None,
    ) -> None:
        now = self._clock()
        if not (items or usage) or (
            receipt is not None and self._counters.pop(receipt, (0.0, 0))[0] <= now
        ):
            return  # nothing to give back, or the receipt was used (or never issued)
        for key, amount in items:
            if key in self._counters and self._counters[key][0] > now:
                expires_at, value = self._counters[key]
                self._counters[key] = (expires_at, max(0, value - amount))
        self._add_usage(usage, -1)

    def _add_usage(self, usage: UsageCharge | None, sign: int) -> None:
        """Move the chargeback books (kept for the process's life: no expiry needed here)."""
        if usage is None:
            return
        for key in usage.keys:
            book = self.books.setdefault(key, {})
            for name, amount in usage.amounts.items():
                if amount:  # as in Redis: a field appears once something moved it
                    book[name] = max(0, book.get(name, 0) + sign * amount)

    async def read(self, keys: Sequence[str]) -> list[int]:
        now = self._clock()
        return [self._value(key, now) for key in keys]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class MemoryCacheStore:
    """Implements `CacheStore` in process memory, bounded by a byte budget (oldest out first)."""

    def __init__(self, clock: Clock = time.time, budget: int = DEFAULT_BUDGET) -> None:
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes, self._budget = 0, budget
        self._locks: dict[str, tuple[float, str]] = {}

    async def get_entry(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, data = entry
        if expires_at <= self._clock():
            self._drop(key)
            return None
        return data

    async def put_entry(self, key: str, value: bytes, ttl_seconds: int) -> None:
        self._drop(key)
        self._entries[key] = (self._clock() + ttl_seconds, value)
        self._bytes += len(value)
        while self._bytes > self._budget and self._entries:
            self._drop(next(iter(self._entries)))  # oldest first

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1])

    async def get_or_lock(self, key: str, lock: str, token: str, ttl_ms: int) -> bytes | bool:
        entry = await self.get_entry(key)
        if entry is not None:
            return entry
        if await self.locked(lock):
            return False
        self._locks[lock] = (self._clock() + ttl_ms / 1000, token)
        return True

    async def put_and_release(
        self, key: str, value: bytes, ttl_seconds: int, lock: str, token: str
    ) -> None:
        await self.put_entry(key, value, ttl_seconds)
        await self.release(lock, token)

    async def locked(self, lock: str) -> bool:
        held = self._locks.get(lock)
        if held is not None and held[0] <= self._clock():
            del self._locks[lock]
            held = None
        return held is not None

    async def release(self, lock: str, token: str) -> None:
        if self._locks.get(lock, (0.0, ""))[1] == token:
            del self._locks[lock]

    async def close(self) -> None:
        return None
