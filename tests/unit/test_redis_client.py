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


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/abc",
        "redis://127.0.0.1:6379/0/1",
        "redis+sentinel://127.0.0.1:26379/mymaster/abc",
        "redis+sentinel://127.0.0.1:26379/mymaster/0/1",
        "redis+cluster://127.0.0.1:7000/1",
    ],
)
def test_a_path_that_is_not_a_database_is_refused(url: str) -> None:
    """A database that is not a number (or not 0 on a Cluster) is refused before any client
    is made, instead of becoming database 0 or a bare int() error at the first connection."""
    with pytest.raises(ValueError, match=r"database"):
        connect(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/15",
        "redis+sentinel://127.0.0.1:26379/mymaster",
        "redis+sentinel://127.0.0.1:26379/mymaster/2",
        "redis+cluster://127.0.0.1:7000",
        "redis+cluster://127.0.0.1:7000/0",
    ],
)
def test_the_documented_url_forms_still_open(url: str) -> None:
    """Each documented form, with or without its database, still gives a client."""
    assert connect(url) is not None


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
