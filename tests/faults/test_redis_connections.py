"""The gateway's Redis client across a Redis restart, below the HTTP layer."""

from __future__ import annotations

import asyncio

import pytest
from support.servers import RedisServer

from gateway.store.base import ChargeItem
from gateway.store.connect import connect
from gateway.store.redis import RedisStore

pytestmark = pytest.mark.redis


def _item(store: RedisStore) -> ChargeItem:
    now = store.clock()
    return ChargeItem("gw:v1:quota:{t}:user:u:requests:day:x", 1, 10**9, now - 60, now + 3600)


def test_no_command_fails_on_a_connection_the_old_redis_closed(own_redis: RedisServer) -> None:
    """After Redis restarts, the pooled connections it closed are replaced at check-out, never
    used: no charge fails once Redis answers again."""

    async def scenario() -> list[str]:
        store = RedisStore(connect(own_redis.url))
        await asyncio.gather(*(store.charge([_item(store)]) for _ in range(12)))  # 12 pooled
        own_redis.stop()
        own_redis.start()
        await asyncio.sleep(0.2)  # the closes reach the client's sockets
        outcomes = await asyncio.gather(
            *(store.charge([_item(store)]) for _ in range(12)), return_exceptions=True
        )
        await store.close()
        return [str(o.__cause__ or o) for o in outcomes if isinstance(o, Exception)]

    assert asyncio.run(scenario()) == []
