"""Refusals before the body is read: closed, and drained only when small and few."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gateway.door import DRAIN_BYTES, Doorstep
from gateway.errors import AuthenticationError


class Body:
    """A request body that counts what is read of it."""

    def __init__(self, size: int) -> None:
        self.size, self.read = size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.read < self.size:
            chunk = min(16384, self.size - self.read)
            self.read += chunk
            yield b"x" * chunk


def _refuse(door: Doorstep, body: Body, length: str | None, expect: str | None = None) -> str:
    error = asyncio.run(door.refuse(AuthenticationError("no"), length, expect, aiter(body)))
    return error.headers["connection"]


def test_a_small_body_is_drained_and_a_large_one_is_not_read_at_all() -> None:
    """A body within DRAIN_BYTES is read (its caller can read the answer); one declared
    larger is left unread; both connections close."""
    small, large = Body(1000), Body(4_000_000)
    assert _refuse(Doorstep(), small, "1000") == "close" and small.read == 1000
    assert _refuse(Doorstep(), large, "4000000") == "close" and large.read == 0


def test_a_chunked_body_is_drained_only_up_to_the_bound() -> None:
    """A body without a length is drained (it may be a small one, as the node SDK streams
    it), but read at most DRAIN_BYTES (plus a chunk) before closing."""
    small, endless = Body(1000), Body(10**9)
    _refuse(Doorstep(), small, None)
    _refuse(Doorstep(), endless, None)
    assert small.read == 1000
    assert DRAIN_BYTES <= endless.read <= DRAIN_BYTES + 16384


def test_no_drain_for_a_caller_waiting_for_100_continue_or_past_the_drain_limit() -> None:
    """A caller waiting for `100 Continue` sends no body; and past `max_draining` drains at
    once, refusals close without reading."""
    waiting, busy = Body(1000), Body(1000)
    _refuse(Doorstep(), waiting, "1000", expect="100-continue")
    door = Doorstep(max_draining=0)
    _refuse(door, busy, "1000")
    assert waiting.read == 0 and busy.read == 0
