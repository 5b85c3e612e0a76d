"""The image endpoints. POST /v1/images/variations (and generations, edits alike), top
to bottom:

    the door (authenticate -> quota room? -> a place in flight -> the upload lease) -> read
    (each chunk counted in the lease)
    -> validate -> the metered pipeline (`gateway.pipeline`: cache lookup, and on a miss
    the bid to lead -> reserve quota -> upstream, coalesced, the upload's bytes let go of
    once sent -> store -> settle quota -> relay)

Every check that can refuse a request runs before anything is spent: a bad key, body or
parameter never reaches the quota store, the cache or the upstream. A caller without a
valid key, or refused for quota a moment ago and still out of room, holds no place in
flight and no upload budget (`gateway.door`). Once quota is reserved, every way out
settles it to what the upstream did (`gateway.pipeline`): a caller who hangs up after
the request was sent does not cancel it.

Generations (JSON) and edits (multipart: `image` or `image[]`, `mask`) take the same path:
validated from what their model takes (`gateway.image_params`), reserved from their
estimate, answered by the image API adapter. A generation is cached only when its team
(`images.teams.<team>.cache_generations`) or the request (`x-gateway-cache-generations:
true`) opts in; an edit is cached by its inputs' digests, prompt and parameters. With
`stream: true` either one is relayed as server-sent events (`gateway.streaming`: the same
reserve and settle, never cached).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response

from gateway import pipeline, streaming
from gateway.auth.base import Identity
from gateway.door import LengthCheck
from gateway.image_inputs import read_edit
from gateway.image_params import ModelRoom, parse_generation
from gateway.multipart import check_declared_length, length_check, read_body
from gateway.params import read_variation_request
from gateway.pipeline import Metered
from gateway.quota.counters import estimated_cost
from gateway.services import Services
from gateway.settings.build import Settings
from gateway.settings.models import ImagesConfig
from gateway.uploads import ImageShelf
from gateway.upstream.base import EditRequest, GenerationRequest, VariationRequest

GENERATION_BODY_BYTES = 256 * 1024  # a 32,000-character prompt, in any UTF-8, and the rest
CACHE_GENERATIONS = "x-gateway-cache-generations"  # "true": this generation may be cached


# Each endpoint's bound on a body's declared length (`Spending.length_bound`), kept at the
# door before anything is held, then again as the body streams in.
def variation_length(_: Settings) -> LengthCheck:
    return check_declared_length


def generation_length(_: Settings) -> LengthCheck:
    return length_check(GENERATION_BODY_BYTES)


def edit_length(settings: Settings) -> LengthCheck:
    return length_check(edit_body_bytes(settings.config.images))


def edit_body_bytes(images: ImagesConfig) -> int:
    """The most an edits body may take: `images.max_edit_body_mb`."""
    return images.max_edit_body_mb * 2**20


async def create_variation(request: Request) -> Response:
    """The product: one image variations call on behalf of an authenticated caller."""
    services: Services = request.app.state.services
    async with services.door.admit(request) as admitted:
        content_type = request.headers.get("content-type")
        cache = services.metering.cache
        hasher = cache.hasher(cache.mode(request.headers.get("cache-control")))  # None: uncached
        params = await read_variation_request(content_type, admitted.body, services.limits, hasher)
        params = replace(params, on_sent=admitted.lease.release)
        upstream = services.upstream.serving(params.operation)
        metered = Metered(
            admitted.identity,
            estimated_cost(params.n, upstream.estimate(params)),
            upstream,
            params,
            waiting=lambda: _one_copy_while_waiting(services.door.shelf, params),
            spent_on=("variations", params.model),
        )
        return await pipeline.serve(request, services.metering, metered)


def _edit_copy_while_waiting(
    shelf: ImageShelf, params: EditRequest
) -> Callable[[], AbstractContextManager[None]]:
    """An edit waiting on a coalesced leader keeps, like a variation, only the one copy of
    its images and mask that its identical waiters share."""

    @contextlib.contextmanager
    def waiting() -> Iterator[None]:
        digest = "|".join(params.key_material())
        with shelf.share(digest, (params.images, params.mask)) as copy:
            params.share(copy)
            yield

    return waiting


@contextlib.contextmanager
def _one_copy_while_waiting(shelf: ImageShelf, params: VariationRequest) -> Iterator[None]:
    """A request that will wait on a coalesced leader gives back its upload at once, keeping
    only the one copy of the image its identical waiters share (`ImageShelf`)."""
    with shelf.share(params.image_digest, params.image) as copy:
        params.share(copy)
        yield


async def create_generation(request: Request) -> Response:
    """Images from a prompt (JSON), on behalf of an authenticated caller."""
    services: Services = request.app.state.services
    async with services.door.admit(request) as admitted:
        limits = services.limits
        body = await read_body(
            admitted.body,
            max_body_bytes=GENERATION_BODY_BYTES,
            timeout_seconds=limits.body_timeout_seconds,
        )
        params = parse_generation(body, _room(services, admitted.identity))
        admitted.lease.release()  # nothing of the body is held past here
        opted_in = request.headers.get(CACHE_GENERATIONS, "").strip().lower() == "true"
        cacheable = opted_in or services.images.caches_generations(admitted.identity.team)
        return await _serve(request, services, admitted.identity, params, cacheable)


async def create_edit(request: Request) -> Response:
    """Images edited from one or more images (multipart), with an optional mask."""
    services: Services = request.app.state.services
    async with services.door.admit(request) as admitted:
        cache = services.metering.cache
        mode = cache.mode(request.headers.get("cache-control"))
        params = await read_edit(
            request.headers.get("content-type"),
            admitted.body,
            _room(services, admitted.identity),
            max_body_bytes=edit_body_bytes(services.images),
            timeout_seconds=services.limits.body_timeout_seconds,
            new_hasher=cache.hashers(mode),
        )
        params = replace(params, on_sent=admitted.lease.release)
        waiting = _edit_copy_while_waiting(services.door.shelf, params)
        return await _serve(request, services, admitted.identity, params, True, waiting)


def _room(services: Services, identity: Identity) -> ModelRoom:
    """The models `identity` may name now (its team's, when limited), and what each takes."""
    image_api = services.upstream.image_api
    allowed = services.images.team_models(identity.team)
    return ModelRoom(image_api.models(allowed), image_api.capabilities)


async def _serve(
    request: Request,
    services: Services,
    identity: Identity,
    params: GenerationRequest | EditRequest,
    cacheable: bool,
    waiting: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> Response:
    """A validated generations or edits request through the metered pipeline."""
    upstream = services.upstream.serving(params.operation)
    cost = estimated_cost(params.n, upstream.estimate(params))
    spent_on = (params.operation, params.options.model)
    metered = Metered(
        identity, cost, upstream, params, waiting, cacheable=cacheable, spent_on=spent_on
    )
    request.state.log["model"] = params.options.model
    if params.options.stream:  # relayed as it comes, never cached
        in_flight = services.door.in_flight
        in_flight.hold()  # the relay keeps the caller's place in flight until it ends
        return await streaming.serve_stream(
            request, services.metering, metered, ended=in_flight.leave
        )
    return await pipeline.serve(request, services.metering, metered)
