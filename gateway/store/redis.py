"""The Redis store: shared by every gateway process, state survives restarts."""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from gateway.store.base import StoreError

SOCKET_TIMEOUT_SECONDS = 2.0


def connect(url: str) -> redis.Redis:
    """A client with short timeouts, so an unreachable Redis fails fast instead of hanging."""
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
    )


class RedisStore:
    """Implements `Store` on Redis; every driver error becomes `StoreError`."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    async def put_blob(self, key: str, data: bytes, ttl_seconds: int) -> None:
        await self._call(self._redis.set(key, data, ex=ttl_seconds))

    async def get_blob(self, key: str) -> bytes | None:
        value = await self._call(self._redis.get(key))
        return value if isinstance(value, bytes) else None

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()

    @staticmethod
    async def _call(awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis: {type(exc).__name__}") from exc
