"""The admin API's image models: the lists and prices in force (and where each comes from),
what the upstream says of each model, and the runtime changes to lists and prices.

Every route authenticates (401) and needs the admin role (403) first, as the rest of the
admin API; refusals change nothing. See docs/admin-api.md, "Image models".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.admin.models import ListSet, PriceSet, price_dict
from gateway.admin.records import iso
from gateway.routes.admin import _admin, _body, _store_errors
from gateway.services import Services
from gateway.settings.models import PRICED_QUALITIES, ModelPrice
from gateway.upstream.catalogue import ModelCatalogue, ModelState
from gateway.upstream.pricing import per_image


def _day(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).date().isoformat()


def estimates(price: ModelPrice | None) -> dict[str, dict[str, float]] | None:
    """USD one image is reserved at, for each size and quality of the price's table."""
    if price is None:
        return None
    return {
        size: {q: round(per_image(price, size, q), 6) for q in PRICED_QUALITIES}
        for size in price.output_tokens
    }


def _model(state: ModelState) -> dict[str, Any]:
    return {
        "model": state.model,
        "operations": list(state.operations),
        "available": state.available,
        "listed": state.listed,
        "shutdown_date": _day(state.shutdown_at),
        "refused_at": iso(state.refused_at),
        "price_source": state.price_source,
        "estimate_usd": estimates(state.price),
    }


def _lists(catalogue: ModelCatalogue) -> list[dict[str, Any]]:
    return [
        {
            "operation": op,
            "models": list(catalogue.models(op)),
            "source": catalogue.list_source(op),
            "config_models": list(catalogue.config_list(op)),
            "serving": catalogue.serving(op),
        }
        for op in catalogue.operations()
    ]


def model_view(services: Services) -> dict[str, Any]:
    """What GET /admin/models answers: lists, models, prices and the last /models reading."""
    catalogue = services.upstream.catalogue
    prices = [
        {"model": m, "source": catalogue.price_source(m), "price": price_dict(catalogue.price(m))}
        for m in catalogue.priced()
    ]
    watch = catalogue.watch
    return {
        "lists": _lists(catalogue),
        "models": [_model(state) for state in catalogue.states()],
        "prices": prices,
        "watch": {
            "every_seconds": services.upstream.watch_seconds,
            "checked_at": iso(watch.checked_at),
            "error": watch.error,
        },
    }


async def show(request: Request) -> Response:
    """GET /admin/models: the models in force, their state upstream, their prices."""
    await _admin(request)
    return JSONResponse(model_view(request.app.state.services))


async def set_list(request: Request) -> Response:
    """PUT /admin/models/lists/{operation}: the operation's runtime list, replaced."""
    _, actor = await _admin(request)
    services: Services = request.app.state.services
    operation, body = request.path_params["operation"], await _body(request)
    done: ListSet = await _store_errors(services.models.set_list(operation, body, actor))
    replaced = list(done.replaced) if done.replaced is not None else None
    answer = {"operation": operation, "models": list(done.models), "replaced": replaced}
    return JSONResponse(answer)


async def unset_list(request: Request) -> Response:
    """DELETE /admin/models/lists/{operation}: back to the config's list."""
    _, actor = await _admin(request)
    services: Services = request.app.state.services
    operation = request.path_params["operation"]
    dropped = await _store_errors(services.models.unset_list(operation, actor))
    config = list(services.upstream.catalogue.config_list(operation))
    return JSONResponse({"operation": operation, "removed": list(dropped), "models": config})


async def set_price(request: Request) -> Response:
    """PUT /admin/models/prices/{model}: the model's runtime price table, replaced."""
    _, actor = await _admin(request)
    services: Services = request.app.state.services
    model, body = request.path_params["model"], await _body(request)
    done: PriceSet = await _store_errors(services.models.set_price(model, body, actor))
    answer = {
        "model": model,
        "price": price_dict(done.price),
        "replaced": price_dict(done.replaced),
        "estimate_usd": estimates(done.price),
    }
    return JSONResponse(answer)


async def unset_price(request: Request) -> Response:
    """DELETE /admin/models/prices/{model}: back to the config's price (if any)."""
    _, actor = await _admin(request)
    services: Services = request.app.state.services
    model = request.path_params["model"]
    dropped = await _store_errors(services.models.unset_price(model, actor))
    config = price_dict(services.upstream.catalogue.config_price(model))
    return JSONResponse({"model": model, "removed": price_dict(dropped), "price": config})


ROUTES = [
    Route("/admin/models", show, methods=["GET"]),
    Route("/admin/models/lists/{operation}", set_list, methods=["PUT"]),
    Route("/admin/models/lists/{operation}", unset_list, methods=["DELETE"]),
    # `path`: a model id may hold a `/` (percent-encoded in the path).
    Route("/admin/models/prices/{model:path}", set_price, methods=["PUT"]),
    Route("/admin/models/prices/{model:path}", unset_price, methods=["DELETE"]),
]
