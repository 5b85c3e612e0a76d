"""The Redis store: shared by every gateway process, state survives restarts.

Multi-step work is one Lua script each (store/lua/), registered once and run by SHA.
Time is Redis's own: `clock(tag)` is the local clock corrected by the offset to the clock of
the node that holds `tag`'s slot, measured whenever the charge script reports that they
disagree (on a Cluster each slot's owner may keep its own time, and a failover may hand a
slot to a node whose clock differs). Keys of several slots are read slot by slot, never
by one cross-slot command.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import orjson
from redis.crc import key_slot

from gateway.store.base import (
    ChargeItem,
    ChargeOutcome,
    Clock,
    Crossed,
    Receipt,
    UsageCharge,
)
from gateway.store.client import RedisClient, call, lua


def _slot(key: str) -> int:
    return int(key_slot(key.encode()))


def _with_usage(name: str) -> str:
    """A quota script with the chargeback usage helpers it calls (usage.lua) in front."""
    return lua("usage.lua") + lua(name)


def _usage_arg(usage: UsageCharge | None) -> str:
    """The usage argument of charge.lua and refund.lua: "" for none, else its JSON."""
    if usage is None:
        return ""
    # Zero amounts are left out: they change nothing, and Lua would send -0 to HINCRBY.
    add = {field: amount for field, amount in usage.amounts.items() if amount}
    spec = {"keys": len(usage.keys), "add": add, "expire_at": usage.expire_at}
    if usage.within is not None:
        spec["within"] = list(usage.within)
    return orjson.dumps(spec).decode()


class RedisStore:
    """Implements `Store` on Redis; every driver error becomes `StoreError`."""

    def __init__(self, client: RedisClient, clock: Clock | None = None) -> None:
        self._redis = client
        self._injected = clock  # tests only: decide at this time instead of Redis's
        self._charge = client.register_script(_with_usage("charge.lua"))
        self._refund = client.register_script(_with_usage("refund.lua"))
        self._offset = 0.0  # Redis's clock minus ours, as the first node measured answered
        self._offsets: dict[int, float] = {}  # per slot, its owner's clock minus ours

    def clock(self, tag: str = "") -> float:
        if self._injected:
            return self._injected()
        return time.time() + self._offsets.get(_slot("{" + tag + "}"), self._offset)

    async def charge(
        self,
        items: Sequence[ChargeItem],
        receipt: Receipt | None = None,
        usage: UsageCharge | None = None,
    ) -> ChargeOutcome | None:
        args: list[Any] = [repr(self._injected()) if self._injected else ""]
        for item in items:
            alerts = ",".join(map(str, item.thresholds))
            args += [item.amount, item.limit, repr(item.start), repr(item.end), alerts]
        keys = [item.key for item in items]
        keys += [item.marker for item in items if item.thresholds]
        if receipt is not None:
            keys.append(receipt.key)
            args.append(receipt.ttl_ms)
        keys += usage.keys if usage is not None else ()
        args.append(_usage_arg(usage))
        reply = await call(self._charge(keys=keys, args=args))
        status, now = reply[0].decode(), float(reply[1])
        if status == "clock":
            self._offsets[_slot(keys[0])] = now - time.time()
            return None
        used = [int(value) for value in reply[2]]
        refused = [int(index) for index in reply[3]] if status == "refused" else []
        flat = [int(value) for value in reply[-1]]
        crossed = [Crossed(*flat[i : i + 3]) for i in range(0, len(flat), 3)]
        return ChargeOutcome(status == "ok", used, refused, now, crossed)

    async def refund(
        self,
        items: Sequence[tuple[str, int]],
        receipt: str | None = None,
        usage: UsageCharge | None = None,
    ) -> None:
        if items or usage is not None:
            keys = [key for key, _ in items] + ([receipt] if receipt is not None else [])
            keys += usage.keys if usage is not None else ()
            args = [amount for _, amount in items] + [_usage_arg(usage)]
            await call(self._refund(keys=keys, args=args))

    async def read(self, keys: Sequence[str]) -> list[int]:
        by_slot: dict[int, list[int]] = {}
        for index, key in enumerate(keys):
            by_slot.setdefault(_slot(key), []).append(index)
        replies = await asyncio.gather(
            *(call(self._redis.mget([keys[i] for i in group])) for group in by_slot.values()),
            return_exceptions=True,
        )
        values = [0] * len(keys)
        for group, reply in zip(by_slot.values(), replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            for index, value in zip(group, reply, strict=True):
                values[index] = int(value) if value is not None else 0
        return values

    async def ping(self) -> None:
        await call(self._redis.ping())
        seconds, micros = await call(self._redis.time())
        self._offset = seconds + micros / 1e6 - time.time()

    async def close(self) -> None:
        await self._redis.aclose()


class RedisCacheStore:
    """Implements `CacheStore` on Redis (the cache's own, if configured: LRU is fine here)."""

    def __init__(self, client: RedisClient) -> None:
        self._redis = client
        self._release = client.register_script(lua("release.lua"))
        self._get_or_lock = client.register_script(lua("get_or_lock.lua"))
        self._put_and_release = client.register_script(lua("put_and_release.lua"))

    async def get_entry(self, key: str) -> bytes | None:
        value = await call(self._redis.get(key))
        return value if isinstance(value, bytes) else None

    async def put_entry(self, key: str, value: bytes, ttl_seconds: int) -> None:
        await call(self._redis.set(key, value, ex=ttl_seconds))

    async def get_or_lock(self, key: str, lock: str, token: str, ttl_ms: int) -> bytes | bool:
        found = await call(self._get_or_lock(keys=[key, lock], args=[token, ttl_ms]))
        return found if isinstance(found, bytes) else bool(found)

    async def put_and_release(
        self, key: str, value: bytes, ttl_seconds: int, lock: str, token: str
    ) -> None:
        await call(self._put_and_release(keys=[key, lock], args=[value, ttl_seconds, token]))

    async def locked(self, lock: str) -> bool:
        return bool(await call(self._redis.exists(lock)))

    async def release(self, lock: str, token: str) -> None:
        await call(self._release(keys=[lock], args=[token]))

    async def close(self) -> None:
        await self._redis.aclose()
