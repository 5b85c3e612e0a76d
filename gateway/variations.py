"""POST /v1/images/variations, top to bottom: authenticate -> read -> validate -> upstream -> relay.

Every check that can refuse a request runs before anything is spent: a bad key, body or
parameter never reaches the upstream.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import AuthenticationError
from gateway.multipart import check_declared_length, discard_body, read_upload
from gateway.params import FIELDS, IMAGE_FIELD, parse_params
from gateway.services import Services


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
    answer = await services.upstream.create_variation(params, services.user_field(identity))
    headers = dict(services.upstream_headers)
    if answer.request_id:
        headers["x-upstream-request-id"] = answer.request_id
    return Response(answer.body, media_type="application/json", headers=headers)
