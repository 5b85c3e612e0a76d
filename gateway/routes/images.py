"""The image endpoints. POST /v1/images/variations, top to bottom:

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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response

from gateway import pipeline
from gateway.params import read_variation_request
from gateway.pipeline import Metered
from gateway.quota.counters import request_cost
from gateway.services import Services
from gateway.uploads import ImageShelf
from gateway.upstream.base import VariationRequest


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
            request_cost(params.n, upstream.image_price(params.size)),
            upstream,
            params,
            waiting=lambda: _one_copy_while_waiting(services.door.shelf, params),
        )
        return await pipeline.serve(request, services.metering, metered)


@contextlib.contextmanager
def _one_copy_while_waiting(shelf: ImageShelf, params: VariationRequest) -> Iterator[None]:
    """A request that will wait on a coalesced leader gives back its upload at once, keeping
    only the one copy of the image its identical waiters share (`ImageShelf`)."""
    with shelf.share(params.image_digest, params.image) as copy:
        params.share(copy)
        yield
