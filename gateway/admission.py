"""How many variations requests one process serves at once; the rest are refused.

The upload bytes held are bounded by `budget.UploadBudget` (requests wait for room); this
bounds the requests themselves: their sockets, tasks and waiting. Past the limit a request
is refused at once with an OpenAI-shaped 503 (`server_overloaded`, `Retry-After`), which
the SDKs retry with backoff, instead of the plain-text 503 of uvicorn's own
`--limit-concurrency` (which also counts idle keep-alive connections).
"""

from __future__ import annotations


class Admission:
    """Counts the requests in flight against `limit` (None: no limit). Not thread-safe:
    one per event loop, as every gateway process has."""

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        """Take a place if one is free; every True must be matched by one `leave`."""
        if self._limit is not None and self.active >= self._limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        """Give the place back."""
        self.active -= 1
