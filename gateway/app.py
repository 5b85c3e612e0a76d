"""`create_app(settings)`: the route table, middleware, error handlers and lifespan. Wiring
only, no logic."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.door import Spending
from gateway.errors import GatewayError, MethodNotAllowed, NotFound, error_response
from gateway.lifespan import open_services
from gateway.middleware import RequestContextMiddleware
from gateway.routes import admin, console, images, models, ops, quotas
from gateway.server.protocol import DOOR_STATE, HEAD_SECONDS_STATE, KeylessDoor
from gateway.settings.build import Settings, load_settings
from gateway.store.base import Clock
from gateway.tracing import Tracing
from gateway.upstream.hosting import PATH_PREFIX

# The endpoints that spend quota: each is let in by the door, counted in
# gateway_requests_total by its name, and refused by the server when it sends no key.
SPENDING = (
    Spending(
        "/v1/images/variations", "variations", images.create_variation, images.variation_length
    ),
    Spending(
        "/v1/images/generations", "generations", images.create_generation, images.generation_length
    ),
    Spending("/v1/images/edits", "edits", images.create_edit, images.edit_length),
)
ROUTES = [
    *(Route(endpoint.path, endpoint.handler, methods=["POST"]) for endpoint in SPENDING),
    Route("/v1/quota", quotas.own_quota, methods=["GET"]),
    Route("/admin/quotas", quotas.all_quotas, methods=["GET"]),
    Route("/metrics", ops.metrics, methods=["GET"]),
    Route("/healthz", ops.healthz, methods=["GET"]),
    Route("/readyz", ops.readyz, methods=["GET"]),
    Route(PATH_PREFIX + "{token}.png", ops.hosted_file, methods=["GET"]),
    *admin.ROUTES,
    *models.ROUTES,
    *console.ROUTES,
]


def create_app(
    settings: Settings,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    store_clock: Clock | None = None,
) -> Starlette:
    """The gateway as an ASGI app; tests may swap the upstream's transport and the clock
    that quota windows are decided on."""
    metered = {endpoint.path: endpoint.name for endpoint in SPENDING}
    log_polls = settings.config.logging.polls
    tracing = Tracing(settings.tracing) if settings.tracing else None
    context = Middleware(
        RequestContextMiddleware, metered=metered, log_polls=log_polls, tracing=tracing
    )
    app = Starlette(
        routes=ROUTES,
        middleware=[context],
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_gone,
        },
        lifespan=_lifespan(settings, upstream_transport, store_clock, tracing),
    )
    app.router.redirect_slashes = False  # SDKs would turn a redirected POST into a GET
    return app


def _lifespan(
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
    clock: Clock | None,
    tracing: Tracing | None,
) -> Callable[[Starlette], AbstractAsyncContextManager[dict[str, object]]]:
    """The services opened for the app's life (the tracer around them, so the spans of calls
    that outlive their callers are still exported); the server's connections (which outlive
    any request's scope) read the head timeout and the keyless refusal from its state."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        async with (
            tracing.running() if tracing else contextlib.nullcontext(),
            open_services(settings, SPENDING, transport, clock) as services,
        ):
            app.state.services = services
            door = services.door
            yield {
                HEAD_SECONDS_STATE: settings.config.limits.header_timeout_seconds,
                DOOR_STATE: KeylessDoor(door.auth, door.doorstep, SPENDING, door.length_checks),
            }

    return lifespan


def _note(request: Request, **fields: object) -> None:
    request.scope.setdefault("state", {}).setdefault("log", {}).update(fields)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    _note(request, outcome=exc.outcome, error=exc.code)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return await _gateway_error(request, MethodNotAllowed(headers=exc.headers))
    if exc.status_code == 404:
        return await _gateway_error(request, NotFound())
    error = GatewayError(exc.detail)
    error.status, error.type, error.code = exc.status_code, "invalid_request_error", None
    return await _gateway_error(request, error)


async def _client_gone(request: Request, exc: Exception) -> Response:
    # Nobody reads this answer; the status records the disconnect in access logs.
    _note(request, outcome="client_gone")
    return Response(status_code=499)


def app_from_env() -> Starlette:
    """The uvicorn factory: settings from $GATEWAY_CONFIG and the environment, read once."""
    config_path = Path(os.environ.get("GATEWAY_CONFIG", "config/gateway.yaml"))
    return create_app(load_settings(config_path, os.environ))
