"""The in-process store: one process only, state lost on restart. For local runs and tests."""

from __future__ import annotations

import time
from collections import OrderedDict

from gateway.store.base import Clock

DEFAULT_BLOB_BUDGET = 256 * 1024 * 1024


class MemoryStore:
    """Implements `Store` in process memory; blobs are bounded by a byte budget."""

    def __init__(self, clock: Clock = time.time, blob_budget: int = DEFAULT_BLOB_BUDGET) -> None:
        self._clock = clock
        self._blobs: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._blob_bytes = 0
        self._blob_budget = blob_budget

    async def put_blob(self, key: str, data: bytes, ttl_seconds: int) -> None:
        self._drop(key)
        self._blobs[key] = (self._clock() + ttl_seconds, data)
        self._blob_bytes += len(data)
        while self._blob_bytes > self._blob_budget and self._blobs:
            self._drop(next(iter(self._blobs)))  # oldest first

    async def get_blob(self, key: str) -> bytes | None:
        entry = self._blobs.get(key)
        if entry is None:
            return None
        expires_at, data = entry
        if expires_at <= self._clock():
            self._drop(key)
            return None
        return data

    def _drop(self, key: str) -> None:
        entry = self._blobs.pop(key, None)
        if entry is not None:
            self._blob_bytes -= len(entry[1])

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
