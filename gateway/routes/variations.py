"""POST /v1/images/variations, top to bottom:

    authenticate -> quota room? -> admit -> read (each chunk counted in the upload budget)
    -> validate -> the metered pipeline (`gateway.pipeline`: cache lookup, and on a miss
    the bid to lead -> reserve quota -> upstream, coalesced, the upload's bytes let go of
    once sent -> store -> settle quota -> relay)

Every check that can refuse a request runs before anything is spent: a bad key, body or
parameter never reaches the quota store, the cache or the upstream. A caller without a
valid key, or refused for quota a moment ago and still out of room, holds no place in
flight and no upload budget (`routes.door`). Once quota is reserved, every way out
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
from gateway.auth.identity import Identity
from gateway.container import Services
from gateway.params import read_variation_request
from gateway.pipeline import Metered
from gateway.routes.door import admit_upload
from gateway.upstream.base import VariationRequest


async def create_variation(request: Request) -> Response:
    """The product: one image variations call on behalf of an authenticated caller."""
    services: Services = request.app.state.services
    async with admit_upload(request, services) as admitted:
        mode = services.cache.mode(request.headers.get("cache-control"))
        params = await read_variation_request(
            request.headers.get("content-type"),
            admitted.body,
            models=services.models,
            max_side=services.max_image_side,
            timeout_seconds=services.body_timeout_seconds,
            hasher=services.cache.hasher(mode),  # None: the cache never sees this answer
        )
        params = replace(params, on_sent=admitted.lease.release)
        return await pipeline.serve(
            request, services, _metered(services, admitted.identity, params)
        )


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
    with services.shelf.share(params.image_digest, params.image) as copy:
        params.share(copy)
        yield
