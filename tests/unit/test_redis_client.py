"""Which Redis client a URL opens, that stores naming one URL share it, and the clock per slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from gateway.store.base import ChargeItem
from gateway.store.connect import Connections, connect
from gateway.store.redis import RedisStore


def test_one_client_per_distinct_url() -> None:
    """The quota store and the cache naming the same URL get the same client (one pool)."""
    connections = Connections()
    first = connections.client("redis://127.0.0.1:1/0")
    assert connections.client("redis://127.0.0.1:1/0") is first
    assert connections.client("redis://127.0.0.1:1/1") is not first


def test_an_unknown_scheme_is_refused_naming_the_known_ones() -> None:
    """A URL of a scheme no opener handles is refused, listing the schemes that work."""
    with pytest.raises(ValueError, match=r"not a Redis URL .*redis\+cluster://"):
        connect("http://127.0.0.1:6379")


class _SkewedNodes:
    """A client for two nodes whose clocks differ: keys tagged {late} live on a node 100 s
    ahead (a real Redis's TIME cannot be skewed here, so this edge is faked)."""

    def register_script(self, script: str) -> Any:
        async def run(keys: Sequence[str], args: Sequence[Any]) -> Any:
            now = time.time() + (100 if "{late}" in keys[0] else 0)
            return [b"clock", repr(now).encode()]

        return run


def test_each_slot_keeps_the_clock_of_the_node_that_holds_it() -> None:
    """A node whose clock differs corrects the clock for its own slots only: the windows of
    keys held elsewhere do not move."""
    store = RedisStore(_SkewedNodes())  # type: ignore[arg-type]
    item = ChargeItem("gw:v1:quota:{late}:x", 1, 10, 0, 1)
    assert asyncio.run(store.charge([item])) is None
    assert store.clock("late") - time.time() == pytest.approx(100, abs=1)
    assert store.clock("vision") - time.time() == pytest.approx(0, abs=1)
