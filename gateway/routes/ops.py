"""The small endpoints: liveness, readiness, hosted image files."""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import AuthenticationError, NotFound
from gateway.metrics import exposition, model_gauges, usage_gauge
from gateway.services import Services
from gateway.store.base import StoreError


async def healthz(request: Request) -> Response:
    """Liveness: the process answers. Touches no dependency."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: config loaded and the store answers."""
    services: Services = request.app.state.services
    try:
        await services.ops.store.ping()
    except StoreError:
        return JSONResponse({"status": "unavailable", "store": "down"}, status_code=503)
    return JSONResponse({"status": "ready"})


async def hosted_file(request: Request) -> Response:
    """A PNG the gateway published; the unguessable token in the path is the credential."""
    services: Services = request.app.state.services
    png = await services.upstream.images.fetch(request.path_params["token"])
    if png is None:
        raise NotFound("This file does not exist or has expired.")
    return Response(png, media_type="image/png", headers={"cache-control": "private, max-age=3600"})


async def metrics(request: Request) -> Response:
    """Prometheus exposition; quota gauges are read from the store now, for every principal."""
    services: Services = request.app.state.services
    token = services.ops.metrics_token
    if token is not None:
        presented = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(presented, f"Bearer {token.get_secret_value()}".encode()):
            raise AuthenticationError("This endpoint needs the metrics bearer token.")
    states = await services.metering.ledger.all_states(services.door.auth.identities())
    try:
        ledger = services.metering.ledger
        month = ledger.calendar.span("month", ledger.clock()).stamp
        usd = await services.admin.month_usd(services.ops.teams, month)
        usage = [usage_gauge(usd)]
    except StoreError:
        usage = []  # as for the quota gauges: the gap shows on dashboards
    models = [(m.model, m.available, m.shutdown_at) for m in services.upstream.catalogue.states()]
    body = exposition(states, services.ops.multiprocess_dir, [*usage, *model_gauges(models)])
    return Response(body, media_type=CONTENT_TYPE_LATEST)
