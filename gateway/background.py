"""Work that outlives its request: upstream calls whose caller hung up after dispatch.

Once a request has been sent upstream the company may be billed, so a caller leaving does
not cancel the call: it finishes here, is settled as delivered and cached (the caller's
retry is a hit). The upstream client's timeout bounds each call; at shutdown what is left
gets the grace period, then is cancelled (and settled as a lost answer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("gateway.background")
T = TypeVar("T")


class Detached:
    """Tasks that run to their end whoever awaits them; one per event loop."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` as a task kept until it ends; its failure needs no reader."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the caller who would have read it may be gone

    async def close(self, grace_seconds: float) -> None:
        """Let the tasks finish for up to `grace_seconds`, then cancel the rest and wait
        for them to unwind (they settle their quota as they do)."""
        if not self._tasks:
            return
        pending = set(self._tasks)
        _, late = await asyncio.wait(pending, timeout=grace_seconds)
        if late:
            log.warning("%d upstream calls cancelled at shutdown", len(late))
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
