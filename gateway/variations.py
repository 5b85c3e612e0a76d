"""POST /v1/images/variations, top to bottom:
authenticate -> read -> validate -> reserve quota -> upstream -> settle -> relay.

Every check that can refuse a request runs before anything is spent: a bad key, body or
parameter never reaches the quota store or the upstream. Once quota is reserved, every way
out (upstream error, timeout, the caller hanging up, cancellation) settles it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway.errors import AuthenticationError, GatewayError
from gateway.ledger import Reservation, quota_headers
from gateway.multipart import check_declared_length, discard_body, read_upload
from gateway.params import FIELDS, IMAGE_FIELD, VariationRequest, parse_params
from gateway.services import Services
from gateway.upstream import UpstreamAnswer

T = TypeVar("T")


async def create_variation(request: Request) -> Response:
    """The product: one image variations call on behalf of an authenticated caller."""
    services: Services = request.app.state.services
    config = services.settings.config
    check_declared_length(request.headers.get("content-length"))
    try:
        identity = services.auth.authenticate(request.headers.get("authorization"))
    except AuthenticationError:
        await discard_body(request.stream(), config.limits.body_timeout_seconds)
        raise
    upload = await read_upload(
        request.headers.get("content-type"),
        request.stream(),
        allowed=FIELDS,
        file_field=IMAGE_FIELD,
        timeout_seconds=config.limits.body_timeout_seconds,
    )
    params = parse_params(
        upload, models=config.upstream.models, max_side=config.limits.max_image_side
    )
    reservation = await services.ledger.reserve(identity, params.n, params.size)
    headers = {
        **services.upstream_headers,
        **quota_headers(reservation.states(), services.ledger.clock()),
    }
    answer = await _forward(
        request, services, params, services.user_field(identity), reservation, headers
    )
    if answer.request_id:
        headers["x-upstream-request-id"] = answer.request_id
    return Response(answer.body, media_type="application/json", headers=headers)


async def _forward(
    request: Request,
    services: Services,
    params: VariationRequest,
    user: str,
    reservation: Reservation,
    headers: dict[str, str],
) -> UpstreamAnswer:
    """Call upstream, settling the reservation however the call ends."""
    try:
        answer = await _unless_disconnected(
            request, services.upstream.create_variation(params, user)
        )
    except BaseException as exc:
        await asyncio.shield(services.ledger.settle(reservation, 0, params.n))
        if isinstance(exc, GatewayError):
            exc.headers.update(headers)
        raise
    await asyncio.shield(services.ledger.settle(reservation, answer.images, params.n))
    return answer


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the caller hangs up first (raises ClientDisconnect)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise ClientDisconnect()
    return task.result()


async def _wait_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
