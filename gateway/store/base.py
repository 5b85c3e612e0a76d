"""The storage interfaces the gateway uses, and the one function that names every key.

Each implementation (memory.py, redis.py) provides exactly these operations. Backend
failures surface as `StoreError`, never as a driver exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

KEY_PREFIX = "gw:v1"
Clock = Callable[[], float]


class StoreError(Exception):
    """The backend could not be reached or answered with an error."""


def make_key(kind: str, tag: str, *rest: str) -> str:
    """A versioned key; `tag` sits in braces so one subject's keys share a Cluster slot."""
    return ":".join((KEY_PREFIX, kind, "{" + tag + "}", *rest))


class BlobStore(Protocol):
    """Short-lived binary objects (hosted image files)."""

    async def put_blob(self, key: str, data: bytes, ttl_seconds: int) -> None:
        """Store `data` under `key` for `ttl_seconds`; raises `StoreError`."""

    async def get_blob(self, key: str) -> bytes | None:
        """The live object under `key`, or None; raises `StoreError`."""


class Store(BlobStore, Protocol):
    """The gateway's state store."""

    async def ping(self) -> None:
        """Return when the backend answers; raises `StoreError` otherwise."""

    async def close(self) -> None:
        """Release connections."""
