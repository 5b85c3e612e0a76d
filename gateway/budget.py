"""How many bytes of uploads one process holds in memory at once.

A variations request holds its whole upload from the moment it is read until it is
answered (the image, which the upstream body is sent from, while the upstream works):
with a slow upstream and large images, hundreds of requests at once would take gigabytes
(825 MB of RSS for 200 concurrent 3.9 MB uploads, bench/README.md, issue 8). So a request
reserves its declared length (the cap, for a body streamed without one) before reading
it; past the budget, requests wait their turn in arrival order with their bodies left
unread in the socket, where TCP holds the caller back. A request that waits longer than
`wait_seconds` is refused with a retryable 503 rather than queued forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

from gateway.errors import Overloaded


class UploadBudget:
    """A first-come, first-served byte budget (one per process: the event loop's)."""

    def __init__(self, capacity_bytes: int, wait_seconds: float) -> None:
        self.capacity, self._free, self._wait = capacity_bytes, capacity_bytes, wait_seconds
        self._queue: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def free(self) -> int:
        """Bytes not reserved right now."""
        return self._free

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[None]:
        """Reserve `nbytes` (at most the capacity) for the block; raises `Overloaded` when
        the wait for them exceeds `wait_seconds`."""
        nbytes = min(nbytes, self.capacity)
        await self._acquire(nbytes)
        try:
            yield
        finally:
            self._free += nbytes
            self._wake()

    async def _acquire(self, nbytes: int) -> None:
        if not self._queue and nbytes <= self._free:
            self._free -= nbytes
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (nbytes, turn)
        self._queue.append(entry)
        try:
            async with asyncio.timeout(self._wait):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():  # granted as we gave up: hand it back
                self._free += nbytes
            else:
                with contextlib.suppress(ValueError):  # a grant pass may have dropped it
                    self._queue.remove(entry)
            self._wake()
            if isinstance(exc, TimeoutError):
                raise Overloaded() from None
            raise

    def _wake(self) -> None:
        """Grant the waiters at the head of the queue for as long as they fit."""
        while self._queue and self._queue[0][0] <= self._free:
            nbytes, turn = self._queue.popleft()
            if not turn.done():
                self._free -= nbytes
                turn.set_result(None)
