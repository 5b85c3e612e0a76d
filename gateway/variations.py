"""POST /v1/images/variations, top to bottom:

    admit -> authenticate -> wait for memory -> read -> validate -> cache lookup (and, on a
    miss, the bid to lead) -> reserve quota -> upstream (coalesced) -> store -> settle quota
    -> relay

Every check that can refuse a request runs before anything is spent: a bad key, body or
parameter never reaches the quota store, the cache or the upstream. Once quota is
reserved, every way out settles it to what the upstream did (`gateway.forwarding`): a
caller who hangs up after the request was sent does not cancel it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from gateway import metrics
from gateway.auth import Identity
from gateway.cache import Cached, CacheResult, Mode, Probe, cache_mode
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    IdentityProviderUnavailable,
    Overloaded,
)
from gateway.forwarding import Forward
from gateway.ledger import Reservation, quota_headers
from gateway.multipart import body_bound, check_declared_length, discard_body
from gateway.params import VariationRequest, read_variation_request
from gateway.services import Services
from gateway.settings import Unit


async def create_variation(request: Request) -> Response:
    """The product: one image variations call on behalf of an authenticated caller."""
    services: Services = request.app.state.services
    if not services.admission.try_enter():
        await _refuse_unread(request, services)
        raise Overloaded()
    try:
        return await _variation(request, services)
    finally:
        services.admission.leave()


async def _variation(request: Request, services: Services) -> Response:
    identity = await _authenticate(request, services)
    request.state.log.update(identity.log_fields())
    # The upload is held in memory until the answer: wait for room before reading it.
    async with services.uploads.hold(body_bound(request.headers.get("content-length"))):
        return await _serve(request, services, identity)


async def _serve(request: Request, services: Services, identity: Identity) -> Response:
    params = await _read_params(request, services)
    mode = cache_mode(request.headers.get("cache-control")) if services.cache.enabled else "bypass"
    key = services.cache_key(identity, params)
    probe = await services.cache.probe(key) if mode == "use" else None  # a miss may lead
    if probe is not None and probe.answer is not None:
        units = services.settings.config.cache.hits_count_against
        reservation = await _reserve(services, identity, params, "HIT", units)
        return _relay(request, services, Cached(probe.answer, "HIT"), reservation)
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


async def _authenticate(request: Request, services: Services) -> Identity:
    check_declared_length(request.headers.get("content-length"))
    try:
        return await services.auth.authenticate(request)
    except (AuthenticationError, IdentityProviderUnavailable):
        await _refuse_unread(request, services)
        raise


async def _refuse_unread(request: Request, services: Services) -> None:
    """Drain the upload of a request refused before reading it, so its caller reads the
    refusal instead of a reset connection (bounded by the byte cap and the deadline)."""
    await discard_body(request.stream(), services.settings.config.limits.body_timeout_seconds)


async def _read_params(request: Request, services: Services) -> VariationRequest:
    config = services.settings.config
    return await read_variation_request(
        request.headers.get("content-type"),
        request.stream(),
        models=config.upstream.models,
        max_side=config.limits.max_image_side,
        timeout_seconds=config.limits.body_timeout_seconds,
    )


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
