"""POST /v1/images/variations, top to bottom:

    authenticate -> quota room? -> admit -> read (each chunk counted in the upload budget)
    -> validate -> the metered pipeline (`gateway.pipeline`: cache lookup, and on a miss
    the bid to lead -> reserve quota -> upstream, coalesced, the upload's bytes let go of
    once sent -> store -> settle quota -> relay)

Every check that can refuse a request runs before anything is spent: a bad key, body or
parameter never reaches the quota store, the cache or the upstream. A caller without a
valid key, or refused for quota a moment ago and still out of room, holds no place in
flight and no upload budget (`admission.py`). Once quota is reserved, every way out
settles it to what the upstream did (`gateway.pipeline`): a caller who hangs up after
the request was sent does not cancel it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import replace
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from gateway import pipeline
from gateway.auth.identity import Identity
from gateway.budget import Lease
from gateway.container import Services
from gateway.errors import GatewayError, Overloaded
from gateway.multipart import check_declared_length
from gateway.params import read_variation_request
from gateway.pipeline import Metered
from gateway.upstream.base import VariationRequest

T = TypeVar("T")


async def create_variation(request: Request) -> Response:
    """The product: one image variations call on behalf of an authenticated caller."""
    services: Services = request.app.state.services
    identity = await _authenticate(request, services)
    request.state.log.update(identity.log_fields())
    await _at_the_door(request, services, services.room.check(identity))
    if not services.admission.try_enter():
        await _at_the_door(request, services, _overloaded())
    try:
        async with services.uploads.lease(identity.user) as lease:
            return await _serve(request, services, identity, lease)
    finally:
        services.admission.leave()


async def _serve(
    request: Request, services: Services, identity: Identity, lease: Lease
) -> Response:
    params = replace(await _read_params(request, services, lease), on_sent=lease.release)
    return await pipeline.serve(request, services, _metered(services, identity, params))


def _metered(services: Services, identity: Identity, params: VariationRequest) -> Metered:
    """The variations call as the metered pipeline sees it."""
    return Metered(
        identity=identity,
        cost=services.ledger.cost(params.n, params.size),
        asked=params.n,
        key_material=params.key_material(),
        response_format=params.response_format,
        produce=lambda: services.upstream.create_variation(params, services.user_field(identity)),
        let_go=params.sent,
        waiting=lambda: _one_copy_while_waiting(services, params),
    )


@contextlib.contextmanager
def _one_copy_while_waiting(services: Services, params: VariationRequest) -> Iterator[None]:
    """A request that will wait on a coalesced leader gives back its upload at once, keeping
    only the one copy of the image its identical waiters share (`ImageShelf`)."""
    with services.shelf.share(params.image_sha256, params.image) as copy:
        params.share(copy)
        yield


async def _authenticate(request: Request, services: Services) -> Identity:
    async def identify() -> Identity:
        check_declared_length(request.headers.get("content-length"))
        return await services.auth.authenticate(request)

    return await _at_the_door(request, services, identify())


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


async def _read_params(request: Request, services: Services, lease: Lease) -> VariationRequest:
    return await read_variation_request(
        request.headers.get("content-type"),
        _held(request.stream(), lease),
        models=services.models,
        max_side=services.max_image_side,
        timeout_seconds=services.body_timeout_seconds,
    )


async def _held(body: AsyncIterator[bytes], lease: Lease) -> AsyncIterator[bytes]:
    """`body`'s chunks, each counted in the upload budget before it is passed on."""
    async for chunk in body:
        await lease.take(len(chunk))
        yield chunk
