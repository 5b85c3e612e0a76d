"""Who gets in, before anything is held for them: the in-flight limit, the quota-room check,
and refusing at the door.

Order of a variations request: authenticate (a caller without a valid key holds nothing),
check the caller has quota room at all (`RoomCheck`), then take a place in flight
(`Admission`), then upload budget (`budget.py`). A request refused before its body is read
is answered with `Connection: close`, so the server stops reading the rest of its body
(`Doorstep`); only a small body is drained first, so that its caller reads the refusal
rather than a reset connection, and only by a few requests at once. A variations request
with no Authorization header at all, from a peer no trusted proxy header may speak for, is
refused from its head alone (`KeylessDoor`), by the server before the app (`protocol.py`):
the cheapest refusal of the most common abuse.

Past the in-flight limit a request is refused at once with an OpenAI-shaped 503
(`server_overloaded`, `Retry-After`), which the SDKs retry with backoff, instead of the
plain-text 503 of uvicorn's own `--limit-concurrency` (which also counts idle keep-alive
connections).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from gateway.auth.authenticator import Authenticator, missing_key
from gateway.auth.identity import Identity
from gateway.errors import AuthenticationError, GatewayError, RateLimited
from gateway.metrics import METERED_PATHS
from gateway.multipart import body_bound, check_declared_length
from gateway.quota.ledger import QuotaLedger
from gateway.vocabulary import Unit

# A refused body is drained only up to this (the SDKs' small uploads fit) ...
DRAIN_BYTES = 64 * 1024
# ... for at most this long ...
DRAIN_SECONDS = 2.0
# ... by at most this many requests at once per process; past it, refusals close at once.
MAX_DRAINING = 32
# Callers remembered as refused (a bound on the memo, not on callers).
_MAX_REMEMBERED = 4096


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


class Doorstep:
    """Refusals of requests whose body was not read: closed after the answer, drained first
    only when the body is small, the caller is not waiting for `100 Continue`, and fewer
    than `max_draining` requests are being drained."""

    def __init__(
        self,
        max_draining: int = MAX_DRAINING,
        max_bytes: int = DRAIN_BYTES,
        seconds: float = DRAIN_SECONDS,
    ) -> None:
        self._max_draining, self.max_bytes, self.seconds = max_draining, max_bytes, seconds
        self.draining = 0

    async def refuse(
        self,
        error: GatewayError,
        content_length: str | None,
        expect: str | None,
        body: AsyncIterator[bytes],
    ) -> GatewayError:
        """`error`, marked to close the connection, after a bounded drain of `body`."""
        error.headers["connection"] = "close"
        if self.start_drain(content_length, expect):
            try:
                await self._drain(body)
            finally:
                self.draining -= 1
        return error

    def start_drain(self, content_length: str | None, expect: str | None) -> bool:
        """Whether a refused body is to be drained first; every True takes a drain, to be
        given back by `draining -= 1`."""
        # A body without a length (the node SDK's) may be small: drained up to the bound.
        small = not content_length or body_bound(content_length) <= self.max_bytes
        if not small or (expect or "").lower() == "100-continue":
            return False
        if self.draining >= self._max_draining:
            return False
        self.draining += 1
        return True

    async def _drain(self, body: AsyncIterator[bytes]) -> None:
        received = 0
        try:
            async with asyncio.timeout(self.seconds):
                async for chunk in body:
                    received += len(chunk)
                    if received > self.max_bytes:
                        break
        except (TimeoutError, OSError):
            pass


class KeylessDoor:
    """Decides from a request's head alone whether it is refused for sending no key at all:
    a POST to a metered endpoint without an Authorization header, from a peer that no trusted proxy
    header may speak for, and not refused first for its declared length. Anything else is
    left to the app."""

    def __init__(self, auth: Authenticator, doorstep: Doorstep) -> None:
        self._auth, self.doorstep = auth, doorstep

    def refusal(
        self, method: str, path: bytes, headers: Sequence[tuple[bytes, bytes]], peer: str | None
    ) -> AuthenticationError | None:
        """The 401 the app would give this head, or None when only the app can decide."""
        if method != "POST" or path not in _METERED or not self._auth.needs_bearer(peer):
            return None
        if any(name == b"authorization" for name, _ in headers):
            return None
        length = next((value for name, value in headers if name == b"content-length"), None)
        try:
            check_declared_length(length.decode("latin-1") if length is not None else None)
        except GatewayError:
            return None  # the app refuses this for its length before it looks at the key
        return missing_key()


_METERED = frozenset(path.encode() for path in METERED_PATHS)


class RoomCheck:
    """Refuses, before it holds anything, a caller refused for quota a moment ago whose rules
    are still spent: one read for those callers, nothing at all for the others."""

    def __init__(self, ledger: QuotaLedger, units: Sequence[Unit]) -> None:
        # A request needs at least what a cache hit consumes: without room there, it is refused
        # whatever it asks for; with room, a hit may still be served.
        self._ledger, self._units = ledger, tuple(units)
        self._refused: dict[tuple[str, str], None] = {}

    def note(self, identity: Identity, error: GatewayError) -> None:
        """Remember a refusal of `identity` for quota, so its next request is checked first."""
        if isinstance(error, RateLimited):
            if len(self._refused) >= _MAX_REMEMBERED:
                self._refused.clear()
            self._refused[(identity.user, identity.team)] = None

    async def check(self, identity: Identity) -> None:
        """Raise the quota refusal (nothing charged) if a remembered caller is still out of
        room; forget the caller once it has room again."""
        key = (identity.user, identity.team)
        if key not in self._refused or not self._units:
            return
        await self._ledger.check_room(identity, self._units)
        with contextlib.suppress(KeyError):
            del self._refused[key]
