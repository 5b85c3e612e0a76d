"""The small endpoints: liveness, readiness, hosted image files."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import NotFound
from gateway.services import Services
from gateway.store.base import StoreError


async def healthz(request: Request) -> Response:
    """Liveness: the process answers. Touches no dependency."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: config loaded and the store answers."""
    services: Services = request.app.state.services
    try:
        await services.store.ping()
    except StoreError:
        return JSONResponse({"status": "unavailable", "store": "down"}, status_code=503)
    return JSONResponse({"status": "ready"})


async def hosted_file(request: Request) -> Response:
    """A PNG the gateway published; the unguessable token in the path is the credential."""
    services: Services = request.app.state.services
    png = await services.images.fetch(request.path_params["token"])
    if png is None:
        raise NotFound("This file does not exist or has expired.")
    return Response(png, media_type="image/png", headers={"cache-control": "private, max-age=3600"})
