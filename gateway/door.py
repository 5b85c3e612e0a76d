"""The door of every endpoint that spends quota: who gets in before anything is held.

In order: the body's declared length (each endpoint's own bound), the caller's identity,
their quota room (`RoomCheck`: a caller refused for quota a moment ago), a place in flight
(`InFlight`), then a lease that counts each chunk of the body as it arrives
(`uploads.UploadBudget`). An upload and a JSON body are let in alike: the door only counts
their bytes.

A request refused before its body is read is answered with `Connection: close`, so the
server stops reading the rest of its body (`Doorstep`); only a small body is drained first,
so that its caller reads the refusal rather than a reset connection, and only by a few
requests at once. So a caller without a valid key, or without room, holds nothing. A
request with no key at all is refused before it gets here, from its head alone, by the
server (`server/protocol.py`).

Past the in-flight limit a request is refused at once with an OpenAI-shaped 503
(`server_overloaded`, `Retry-After`), which the SDKs retry with backoff, instead of the
plain-text 503 of uvicorn's own `--limit-concurrency` (which also counts idle keep-alive
connections).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import NamedTuple, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from gateway import tracing
from gateway.auth.authenticator import Authenticator
from gateway.auth.base import Identity
from gateway.errors import GatewayError, Overloaded, RateLimited
from gateway.multipart import body_bound
from gateway.quota.ledger import QuotaLedger
from gateway.settings.build import Settings
from gateway.uploads import ImageShelf, Lease, UploadBudget
from gateway.vocabulary import Unit

# A refused body is drained only up to this (the SDKs' small uploads fit) ...
DRAIN_BYTES = 64 * 1024
# ... for at most this long ...
DRAIN_SECONDS = 2.0
# ... by at most this many requests at once per process; past it, refusals close at once.
MAX_DRAINING = 32
# Callers remembered as refused (a bound on the memo, not on callers).
_MAX_REMEMBERED = 4096
T = TypeVar("T")
# Refuses, from its Content-Length alone, a body declared longer than the endpoint reads.
LengthCheck = Callable[[str | None], None]
# An endpoint's length check under the settings (a bound the config may set).
LengthBound = Callable[[Settings], LengthCheck]


class Spending(NamedTuple):
    """An endpoint that spends quota, as the route table names it: its path, its name in
    metrics, its handler, and its bound on the declared body length."""

    path: str
    name: str
    handler: Callable[[Request], Awaitable[Response]]
    length_bound: LengthBound


def length_checks(spending: Sequence[Spending], settings: Settings) -> dict[str, LengthCheck]:
    """Each spending endpoint's length check under `settings`, by path."""
    return {endpoint.path: endpoint.length_bound(settings) for endpoint in spending}


class Admitted(NamedTuple):
    """A caller let in: who they are, their lease, and the body counted into it."""

    identity: Identity
    lease: Lease
    body: AsyncIterator[bytes]


class Door:
    """Lets a caller in (`admit`), or refuses them holding nothing; one per process."""

    def __init__(
        self,
        auth: Authenticator,
        room: RoomCheck,
        in_flight: InFlight,
        uploads: UploadBudget,
        length_checks: Mapping[str, LengthCheck],
        doorstep: Doorstep | None = None,
    ) -> None:
        self.auth, self.room, self.in_flight, self.uploads = auth, room, in_flight, uploads
        self.length_checks = length_checks  # by path, from the route table and the config
        self.doorstep = doorstep or Doorstep()
        # One copy of each image among the requests waiting on a coalesced leader.
        self.shelf = ImageShelf()

    @contextlib.asynccontextmanager
    async def admit(self, request: Request) -> AsyncIterator[Admitted]:
        """Let the caller in, or raise the refusal (answered with the connection closed); the
        place in flight and the lease are given back when the block ends."""
        with tracing.span("door.auth"):
            identity = await self._at_the_door(request, self._identify(request))
        request.state.log.update(identity.log_fields())
        with tracing.span("door.room"):
            await self._at_the_door(request, self.room.check(identity))
        if not self.in_flight.try_enter():
            await self._at_the_door(request, _overloaded())
        try:
            async with self.uploads.lease(identity.user) as lease:
                yield Admitted(identity, lease, _held(request.stream(), lease))
        finally:
            self.in_flight.leave()

    async def _identify(self, request: Request) -> Identity:
        self.length_checks[request.scope["path"]](request.headers.get("content-length"))
        return await self.auth.authenticate(request)

    async def _at_the_door(self, request: Request, step: Awaitable[T]) -> T:
        """`step`'s result; a refusal it raises leaves with the connection closed after the
        answer, the body unread (or, if small, drained within bounds: see `Doorstep`)."""
        try:
            return await step
        except GatewayError as exc:
            headers = request.headers
            await self.doorstep.refuse(
                exc, headers.get("content-length"), headers.get("expect"), request.stream()
            )
            raise


async def _overloaded() -> None:
    raise Overloaded()


async def _held(body: AsyncIterator[bytes], lease: Lease) -> AsyncIterator[bytes]:
    """`body`'s chunks, each counted in the lease before it is passed on."""
    async for chunk in body:
        await lease.take(len(chunk))
        yield chunk


class InFlight:
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

    def hold(self) -> None:
        """Take a place even past the limit, for a request already in flight handing its
        place on (a stream relayed after its handler has returned); matched by one `leave`."""
        self.active += 1

    def leave(self) -> None:
        """Give the place back."""
        self.active -= 1


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
