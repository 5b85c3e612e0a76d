"""How many bytes of uploads one process holds in memory at once, and how many uploads one
caller holds at once.

An upload's bytes are needed from the moment they are read until the upstream has them
(or, for a cache hit or a request waiting on a coalesced leader, until that is known).
A request therefore takes a `Lease` before reading its body, adds to it the bytes it has
actually received, chunk by chunk (what a streamed upload without a length will come to is
unknown; its cap is not what it costs), and gives the lease back as soon as the bytes are
no longer needed: not when the answer comes back, 10 to 60 s later.

Past the budget, readers wait for room with their bodies left unread in the socket, where
TCP holds the caller back, in arrival order. The oldest lease never waits: it may overdraw
the budget by one chunk at a time, so the budget cannot deadlock (every reader half-way
through, all waiting for each other) and one large or slow upload holds only what it has
sent, never the turn of the small ones behind it. A caller holds at most
`per_caller` leases at once; the rest of its uploads wait unread for one of them.
A request that waits longer than `wait_seconds` is refused with a retryable 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar, cast

from gateway.errors import Overloaded

T = TypeVar("T")


class Lease:
    """One request's share of the budget: the bytes it holds now (see `UploadBudget.lease`)."""

    def __init__(self, budget: UploadBudget, order: int, caller: str) -> None:
        self._budget, self.order, self.caller = budget, order, caller
        self.held = 0
        self.released = False

    async def take(self, nbytes: int) -> None:
        """Count `nbytes` more as held, waiting (in arrival order) for room if the budget is
        spent; raises `Overloaded` when the wait exceeds the budget's bound."""
        if not self.released:
            await self._budget._take(self, nbytes)

    def release(self) -> None:
        """Give back everything held, and the caller's place, now and for good: the bytes
        are no longer needed."""
        if not self.released:
            self.released = True
            self._budget._give_back(self)


class UploadBudget:
    """The byte budget and the per-caller cap (one per process: the event loop's)."""

    def __init__(self, capacity_bytes: int, wait_seconds: float, per_caller: int) -> None:
        self.capacity, self._free, self._wait = capacity_bytes, capacity_bytes, wait_seconds
        self._per_caller = per_caller
        self._orders = itertools.count()
        self._live: dict[int, Lease] = {}  # unreleased leases by arrival; the first is oldest
        self._queue: deque[tuple[Lease, int, asyncio.Future[None]]] = deque()
        self._callers: dict[str, int] = {}
        self._caller_queues: dict[str, deque[asyncio.Future[None]]] = {}

    @property
    def free(self) -> int:
        """Bytes not held right now (negative while the oldest lease overdraws)."""
        return self._free

    @property
    def leases(self) -> int:
        """Leases not yet given back."""
        return len(self._live)

    @contextlib.asynccontextmanager
    async def lease(self, caller: str) -> AsyncIterator[Lease]:
        """A lease for one of `caller`'s uploads, for the block (given back at its end at the
        latest); raises `Overloaded` if the caller's other uploads keep it waiting too long."""
        await self._enter(caller)
        lease = Lease(self, next(self._orders), caller)
        self._live[lease.order] = lease
        try:
            yield lease
        finally:
            lease.release()

    async def _take(self, lease: Lease, nbytes: int) -> None:
        if self._oldest() is lease or (not self._queue and nbytes <= self._free):
            self._grant(lease, nbytes)
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (lease, nbytes, turn)
        self._queue.append(entry)
        try:
            await self._bounded(turn)
        except BaseException:
            if not (turn.done() and not turn.cancelled()):
                with contextlib.suppress(ValueError):  # a grant pass may have dropped it
                    self._queue.remove(entry)
                self._wake()
            raise

    def _grant(self, lease: Lease, nbytes: int) -> None:
        lease.held += nbytes
        self._free -= nbytes

    def _give_back(self, lease: Lease) -> None:
        self._free += lease.held
        lease.held = 0
        self._live.pop(lease.order, None)
        self._leave(lease.caller)
        self._wake()

    def _oldest(self) -> Lease | None:
        return next(iter(self._live.values()), None)

    def _wake(self) -> None:
        """Grant the oldest lease's wait, if it waits, then the queue's head while it fits."""
        oldest = self._oldest()
        for entry in self._queue:
            if entry[0] is oldest:
                self._queue.remove(entry)
                self._grant_entry(entry)
                break
        while self._queue and self._queue[0][1] <= self._free:
            self._grant_entry(self._queue.popleft())

    def _grant_entry(self, entry: tuple[Lease, int, asyncio.Future[None]]) -> None:
        lease, nbytes, turn = entry
        if not turn.done():
            self._grant(lease, nbytes)
            turn.set_result(None)

    async def _bounded(self, turn: asyncio.Future[None]) -> None:
        try:
            async with asyncio.timeout(self._wait):
                await turn
        except TimeoutError:
            # The body is not (all) read: the connection closes after the answer.
            raise Overloaded(headers={"connection": "close"}) from None

    async def _enter(self, caller: str) -> None:
        if self._callers.get(caller, 0) < self._per_caller:
            self._callers[caller] = self._callers.get(caller, 0) + 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._caller_queues.setdefault(caller, deque())
        queue.append(turn)
        try:
            await self._bounded(turn)  # `_leave` hands its place over: the count stays
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._leave(caller)  # handed over as we gave up: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(turn)
                if not queue and self._caller_queues.get(caller) is queue:
                    del self._caller_queues[caller]
            raise

    def _leave(self, caller: str) -> None:
        """Hand the caller's place to its next waiting upload, or give it up."""
        queue = self._caller_queues.get(caller)
        while queue:
            turn = queue.popleft()
            if not turn.done():
                turn.set_result(None)
                if not queue:
                    del self._caller_queues[caller]
                return
        self._caller_queues.pop(caller, None)
        self._callers[caller] -= 1
        if not self._callers[caller]:
            del self._callers[caller]


class ImageShelf:
    """One copy of each distinct image among the requests waiting on a coalesced leader.

    A waiter gives back its lease at once (it will probably never send its image), but if
    its leader fails it leads in turn and needs the image after all. Identical waiters
    hold equal bytes, so they share one copy: N waiters on one image cost one image.
    """

    def __init__(self) -> None:
        self._copies: dict[str, tuple[Any, int]] = {}

    @contextlib.contextmanager
    def share(self, digest: str, image: T) -> Iterator[T]:
        """The one copy of the image (or an edit's images) whose digest is `digest`
        (`image`, if it is the first), kept while any request holds it."""
        copy, holders = self._copies.get(digest, (image, 0))
        self._copies[digest] = (copy, holders + 1)
        try:
            yield cast(T, copy)
        finally:
            copy, holders = self._copies[digest]
            if holders == 1:
                del self._copies[digest]
            else:
                self._copies[digest] = (copy, holders - 1)
