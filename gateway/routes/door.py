"""The door of every endpoint that takes an upload: who gets in before anything is held.

In order: the body's declared length, the caller's identity, their quota room (for a
caller refused a moment ago), a place in flight, then an upload lease that counts each
chunk of the body as it arrives. A refusal at any step is answered with the connection
closed and the body unread (or, if small, drained within bounds: `admission.Doorstep`),
so a caller without a key, or without room, holds nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import NamedTuple, TypeVar

from starlette.requests import Request

from gateway.auth.identity import Identity
from gateway.budget import Lease
from gateway.container import Services
from gateway.errors import GatewayError, Overloaded
from gateway.multipart import check_declared_length

T = TypeVar("T")


class Admitted(NamedTuple):
    """A caller let in: who they are, their upload lease, and the body counted into it."""

    identity: Identity
    lease: Lease
    body: AsyncIterator[bytes]


@contextlib.asynccontextmanager
async def admit_upload(request: Request, services: Services) -> AsyncIterator[Admitted]:
    """Let the caller in, or raise the refusal (answered with the connection closed); the
    place in flight and the lease are given back when the block ends."""
    identity = await _at_the_door(request, services, _identify(request, services))
    request.state.log.update(identity.log_fields())
    await _at_the_door(request, services, services.room.check(identity))
    if not services.admission.try_enter():
        await _at_the_door(request, services, _overloaded())
    try:
        async with services.uploads.lease(identity.user) as lease:
            yield Admitted(identity, lease, _held(request.stream(), lease))
    finally:
        services.admission.leave()


async def _identify(request: Request, services: Services) -> Identity:
    check_declared_length(request.headers.get("content-length"))
    return await services.auth.authenticate(request)


async def _overloaded() -> None:
    raise Overloaded()


async def _at_the_door(request: Request, services: Services, step: Awaitable[T]) -> T:
    """`step`'s result; a refusal it raises leaves with the connection closed after the
    answer, the body unread (or, if small, drained within bounds: see `Doorstep`)."""
    try:
        return await step
    except GatewayError as exc:
        headers = request.headers
        await services.doorstep.refuse(
            exc, headers.get("content-length"), headers.get("expect"), request.stream()
        )
        raise


async def _held(body: AsyncIterator[bytes], lease: Lease) -> AsyncIterator[bytes]:
    """`body`'s chunks, each counted in the upload budget before it is passed on."""
    async for chunk in body:
        await lease.take(len(chunk))
        yield chunk
