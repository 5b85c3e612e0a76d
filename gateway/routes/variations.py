"""POST /v1/images/variations, top to bottom:

    authenticate -> quota room? -> admit -> read (each chunk counted in the upload budget)
    -> validate -> cache lookup (and, on a miss, the bid to lead) -> reserve quota
    -> upstream (coalesced; the upload's bytes let go of once sent) -> store -> settle quota
    -> relay

Every check that can refuse a request runs before anything is spent: a bad key, body or
parameter never reaches the quota store, the cache or the upstream. A caller without a
valid key, or refused for quota a moment ago and still out of room, holds no place in
flight and no upload budget (`admission.py`). Once quota is reserved, every way out
settles it to what the upstream did (`gateway.forwarding`): a caller who hangs up after
the request was sent does not cancel it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import replace
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from gateway import metrics
from gateway.auth.identity import Identity
from gateway.budget import Lease
from gateway.cache import Cached, CacheResult, Mode, Probe, cache_mode
from gateway.container import Services
from gateway.errors import GatewayError, Overloaded
from gateway.forwarding import Forward
from gateway.ledger import Reservation, quota_headers
from gateway.multipart import check_declared_length
from gateway.params import read_variation_request
from gateway.upstream.base import VariationRequest
from gateway.vocabulary import Unit

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
    mode = cache_mode(request.headers.get("cache-control")) if services.cache.enabled else "bypass"
    key = services.cache_key(identity, params)
    probe = await services.cache.probe(key) if mode == "use" else None  # a miss may lead
    if probe is not None and probe.answer is not None:
        params.sent()  # answered from the cache: the image is not needed
        units = services.settings.config.cache.hits_count_against
        reservation = await _reserve(services, identity, params, "HIT", units)
        return _relay(request, services, Cached(probe.answer, "HIT"), reservation)
    with _one_copy_while_waiting(services, params, probe):
        try:
            reservation = await _reserve(
                services, identity, params, "BYPASS" if mode == "bypass" else "MISS"
            )
        except BaseException:
            if probe is not None:
                await asyncio.shield(services.cache.abandon(probe))
            raise
        cached = await _forward(request, services, identity, params, reservation, mode, key, probe)
        return _relay(request, services, cached, reservation)


@contextlib.contextmanager
def _one_copy_while_waiting(
    services: Services, params: VariationRequest, probe: Probe | None
) -> Iterator[None]:
    """A request that will wait on a coalesced leader gives back its upload at once, keeping
    only the one copy of the image its identical waiters share (`ImageShelf`)."""
    if probe is None or probe.leading is not False:
        yield
        return
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
    config = services.settings.config
    return await read_variation_request(
        request.headers.get("content-type"),
        _held(request.stream(), lease),
        models=config.upstream.models,
        max_side=config.limits.max_image_side,
        timeout_seconds=config.limits.body_timeout_seconds,
    )


async def _held(body: AsyncIterator[bytes], lease: Lease) -> AsyncIterator[bytes]:
    """`body`'s chunks, each counted in the upload budget before it is passed on."""
    async for chunk in body:
        await lease.take(len(chunk))
        yield chunk


async def _reserve(
    services: Services,
    identity: Identity,
    params: VariationRequest,
    result: CacheResult,
    units: Sequence[Unit] | None = None,
) -> Reservation:
    try:
        return await services.ledger.reserve(identity, params.n, params.size, units)
    except GatewayError as exc:
        services.room.note(identity, exc)
        exc.headers["x-gateway-cache"] = result
        metrics.CACHE_REQUESTS.labels(result.lower()).inc()
        raise


async def _forward(
    request: Request,
    services: Services,
    identity: Identity,
    params: VariationRequest,
    reservation: Reservation,
    mode: Mode,
    key: str,
    probe: Probe | None,
) -> Cached:
    """The answer from upstream (or a coalesced leader), quota settled to what the upstream
    did (see `gateway.forwarding`)."""
    forward = Forward(request, services, identity, params, reservation, mode, key, probe)
    try:
        return await forward.run()
    except GatewayError as exc:
        result: CacheResult = "BYPASS" if mode == "bypass" else "MISS"
        exc.headers.update(_headers(services, reservation, result))
        metrics.CACHE_REQUESTS.labels(result.lower()).inc()
        raise


def _headers(services: Services, reservation: Reservation, result: CacheResult) -> dict[str, str]:
    return {
        **services.upstream_headers,
        **quota_headers(reservation.states(), services.ledger.clock()),
        "x-gateway-cache": result,
    }


def _relay(
    request: Request, services: Services, cached: Cached, reservation: Reservation
) -> Response:
    hit = cached.result == "HIT"
    request.state.log.update(cache=cached.result, outcome="cache_hit" if hit else "ok")
    metrics.CACHE_REQUESTS.labels(cached.result.lower()).inc()
    metrics.IMAGES.labels(request.state.log["team"]).inc(cached.answer.images)
    headers = _headers(services, reservation, cached.result)
    if cached.answer.request_id:
        headers["x-upstream-request-id"] = cached.answer.request_id
    return Response(cached.answer.body, media_type="application/json", headers=headers)
