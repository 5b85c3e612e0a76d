"""The Redis store: shared by every gateway process, state survives restarts.

Multi-step work is one Lua script each (store/lua/), registered once and run by SHA.
Time is Redis's own: `clock()` is the local clock corrected by the offset to Redis's
`TIME`, re-measured whenever the charge script reports that they disagree.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from gateway.store.base import (
    ChargeItem,
    ChargeOutcome,
    Clock,
    Receipt,
    StoreError,
    UsageCharge,
)

SOCKET_TIMEOUT_SECONDS = 2.0
POOL_SIZE = 64  # per process; a quota step holds a connection for ~0.1 ms


def _script(name: str) -> str:
    return resources.files("gateway.store").joinpath("lua", name).read_text(encoding="utf-8")


def _with_usage(name: str) -> str:
    """A quota script with the chargeback usage helpers it calls (usage.lua) in front."""
    return _script("usage.lua") + _script(name)


def _usage_arg(usage: UsageCharge | None) -> str:
    """The usage argument of charge.lua and refund.lua: "" for none, else its JSON."""
    if usage is None:
        return ""
    # Zero amounts are left out: they change nothing, and Lua would send -0 to HINCRBY.
    add = {field: amount for field, amount in usage.amounts.items() if amount}
    spec = {"keys": len(usage.keys), "add": add, "expire_at": usage.expire_at}
    return orjson.dumps(spec).decode()


def connect(url: str) -> redis.Redis:
    """A client with short timeouts, so an unreachable Redis fails fast instead of hanging.

    The pool blocks (briefly) when all its connections are busy: a burst of requests waits
    for a connection instead of failing, and Redis never sees more than the pool's size.
    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=SOCKET_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
        # RESP2: under RESP3, redis-py 8 turns on maintenance notifications ("auto"), which
        # skips its check-out test for connections the server has closed; after a Redis
        # restart every pooled connection would then fail one request before reconnecting.
        protocol=2,
    )
    return redis.Redis.from_pool(pool)


async def _call(awaitable: Any) -> Any:
    """Await a Redis command, turning every driver failure into `StoreError`."""
    try:
        return await awaitable
    except (RedisError, OSError) as exc:
        raise StoreError(f"redis: {type(exc).__name__}") from exc


class RedisStore:
    """Implements `Store` on Redis; every driver error becomes `StoreError`."""

    def __init__(self, client: redis.Redis, clock: Clock | None = None) -> None:
        self._redis = client
        self._injected = clock  # tests only: decide at this time instead of Redis's
        self._charge = client.register_script(_with_usage("charge.lua"))
        self._refund = client.register_script(_with_usage("refund.lua"))
        self._offset = 0.0  # Redis's clock minus ours

    def clock(self) -> float:
        return self._injected() if self._injected else time.time() + self._offset

    async def charge(
        self,
        items: Sequence[ChargeItem],
        receipt: Receipt | None = None,
        usage: UsageCharge | None = None,
    ) -> ChargeOutcome | None:
        args: list[Any] = [repr(self._injected()) if self._injected else ""]
        for item in items:
            args += [item.amount, item.limit, repr(item.start), repr(item.end)]
        keys = [item.key for item in items]
        if receipt is not None:
            keys.append(receipt.key)
            args.append(receipt.ttl_ms)
        keys += usage.keys if usage is not None else ()
        args.append(_usage_arg(usage))
        reply = await _call(self._charge(keys=keys, args=args))
        status, now = reply[0].decode(), float(reply[1])
        if status == "clock":
            self._offset = now - time.time()
            return None
        used = [int(value) for value in reply[2]]
        refused = [int(index) for index in reply[3]] if status == "refused" else []
        return ChargeOutcome(status == "ok", used, refused, now)

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
            await _call(self._refund(keys=keys, args=args))

    async def read(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        values = await _call(self._redis.mget(keys))
        return [int(value) if value is not None else 0 for value in values]

    async def ping(self) -> None:
        await _call(self._redis.ping())
        seconds, micros = await _call(self._redis.time())
        self._offset = seconds + micros / 1e6 - time.time()

    async def close(self) -> None:
        await self._redis.aclose()


class RedisCacheStore:
    """Implements `CacheStore` on Redis (the cache's own, if configured: LRU is fine here)."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._release = client.register_script(_script("release.lua"))
        self._get_or_lock = client.register_script(_script("get_or_lock.lua"))
        self._put_and_release = client.register_script(_script("put_and_release.lua"))

    async def get_entry(self, key: str) -> bytes | None:
        value = await _call(self._redis.get(key))
        return value if isinstance(value, bytes) else None

    async def put_entry(self, key: str, value: bytes, ttl_seconds: int) -> None:
        await _call(self._redis.set(key, value, ex=ttl_seconds))

    async def get_or_lock(self, key: str, lock: str, token: str, ttl_ms: int) -> bytes | bool:
        found = await _call(self._get_or_lock(keys=[key, lock], args=[token, ttl_ms]))
        return found if isinstance(found, bytes) else bool(found)

    async def put_and_release(
        self, key: str, value: bytes, ttl_seconds: int, lock: str, token: str
    ) -> None:
        await _call(self._put_and_release(keys=[key, lock], args=[value, ttl_seconds, token]))

    async def locked(self, lock: str) -> bool:
        return bool(await _call(self._redis.exists(lock)))

    async def release(self, lock: str, token: str) -> None:
        await _call(self._release(keys=[lock], args=[token]))

    async def close(self) -> None:
        await self._redis.aclose()
