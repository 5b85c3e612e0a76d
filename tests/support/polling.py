"""Waiting on a state another process reaches: a bounded poll, for the live tests."""

from __future__ import annotations

import time
from collections.abc import Callable

# The admin plane's promise: a change made on one replica holds on every other within a
# second (docs/admin-api.md).
PROPAGATION_SECONDS = 1.0


def becomes(check: Callable[[], bool], seconds: float = PROPAGATION_SECONDS) -> bool:
    """Whether `check` holds within `seconds` of now (polled; a bounded wait)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
