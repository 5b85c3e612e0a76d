"""Model lists and price tables changed at run time, on the admin plane's one path: checked
(a bad list or price changes nothing), written as one compare-and-set change with its
audit entry, followed by every replica within a second, no restart.

A runtime list replaces the config's list of its operation as a whole; a runtime price
replaces the config's table of its model. Unset, the config's apply again. A list may only
name priced models, and a model's runtime price cannot go while a list in force needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson
from pydantic import Field

from gateway.admin.operations import Actor, AdminOps, parse
from gateway.admin.records import Change, Snapshot, list_field, price_field
from gateway.errors import InvalidRequest, NotFound
from gateway.settings.models import MAX_MODELS, MODEL_ID, ModelName, ModelPrice
from gateway.settings.types import Strict
from gateway.upstream.catalogue import ModelCatalogue


class ListPut(Strict):
    models: list[ModelName] = Field(min_length=1, max_length=MAX_MODELS)


class ListSet(NamedTuple):
    """An operation's runtime list as set, and the one it replaced (None: the config's)."""

    models: tuple[str, ...]
    replaced: tuple[str, ...] | None


class PriceSet(NamedTuple):
    """A model's runtime price as set, and the one it replaced (None: there was none)."""

    price: ModelPrice
    replaced: ModelPrice | None


def price_dict(price: ModelPrice | None) -> dict[str, Any] | None:
    """A price table as answers and the audit show it."""
    return None if price is None else price.model_dump()


def model_name(value: str) -> str:
    """A model id from a path, checked as the config checks one."""
    if not MODEL_ID.fullmatch(value):
        raise InvalidRequest(
            "model: 1 to 128 letters, digits and . _ : / -, starting with a letter or digit",
            code="invalid_value", param="model",
        )  # fmt: skip
    return value


class ModelAdmin:
    """The model operations over the admin plane (`AdminOps`) and the catalogue (for the
    config's lists and prices)."""

    def __init__(self, ops: AdminOps, catalogue: ModelCatalogue) -> None:
        self._ops, self._catalogue = ops, catalogue

    def _operation(self, operation: str) -> str:
        if operation not in self._catalogue.operations():
            raise NotFound(
                f"No model list for {operation[:64]}: this gateway has lists for "
                f"{', '.join(self._catalogue.operations()) or 'none (adapter: variations)'}."
            )
        return operation

    def _priced(self, snapshot: Snapshot, model: str) -> bool:
        return model in snapshot.models.prices or self._catalogue.config_price(model) is not None

    async def set_list(self, operation: str, body: Mapping[str, Any], actor: Actor) -> ListSet:
        """Replace `operation`'s list: every model priced, none twice."""
        self._operation(operation)
        models = tuple(parse(ListPut, body).models)
        for index, model in enumerate(models):
            if model in models[:index]:
                raise InvalidRequest(
                    f"models: {model} is listed twice", code="duplicate_model", param="models"
                )

        def decide(snapshot: Snapshot, now: float) -> tuple[Change | None, ListSet]:
            for index, model in enumerate(models):
                if not self._priced(snapshot, model):
                    raise InvalidRequest(
                        f"models.{index}: {model} has no price: set one first "
                        f"(PUT /admin/models/prices/{model}, gateway models price set)",
                        code="unpriced_model", param=f"models.{index}",
                    )  # fmt: skip
            before = snapshot.models.lists.get(operation)
            if before == models:
                return None, ListSet(models, before)
            change = _list_change("models.set", operation, before, models)
            return change, ListSet(models, before)

        done: ListSet = await self._ops.write(decide, actor)
        return done

    async def unset_list(self, operation: str, actor: Actor) -> tuple[str, ...]:
        """Drop `operation`'s runtime list: the config's applies again. The dropped list."""
        self._operation(operation)

        def decide(snapshot: Snapshot, now: float) -> tuple[Change, tuple[str, ...]]:
            before = snapshot.models.lists.get(operation)
            if before is None:
                raise NotFound(f"No runtime model list for {operation}: the config's applies.")
            return _list_change("models.unset", operation, before, None), before

        dropped: tuple[str, ...] = await self._ops.write(decide, actor)
        return dropped

    async def set_price(self, model: str, body: Mapping[str, Any], actor: Actor) -> PriceSet:
        """Replace `model`'s price table (the config's, or an earlier runtime one)."""
        model_name(model)
        price: ModelPrice = parse(ModelPrice, body)

        def decide(snapshot: Snapshot, now: float) -> tuple[Change | None, PriceSet]:
            before = snapshot.models.prices.get(model)
            if before == price:
                return None, PriceSet(price, before)
            return _price_change("model_price.set", model, before, price), PriceSet(price, before)

        done: PriceSet = await self._ops.write(decide, actor)
        return done

    async def unset_price(self, model: str, actor: Actor) -> ModelPrice:
        """Drop `model`'s runtime price: the config's applies again, which a list in force
        naming the model needs. The dropped price."""
        model_name(model)

        def decide(snapshot: Snapshot, now: float) -> tuple[Change, ModelPrice]:
            before = snapshot.models.prices.get(model)
            if before is None:
                raise NotFound(f"No runtime price for {model}.")
            if self._catalogue.config_price(model) is None and self._in_a_list(snapshot, model):
                raise InvalidRequest(
                    f"model: {model} is in a model list in force and has no price in the "
                    "config: take it out of the list first",
                    code="model_in_use", param="model",
                )  # fmt: skip
            return _price_change("model_price.unset", model, before, None), before

        dropped: ModelPrice = await self._ops.write(decide, actor)
        return dropped

    def _in_a_list(self, snapshot: Snapshot, model: str) -> bool:
        runtime = snapshot.models.lists
        lists = [
            runtime.get(op) or self._catalogue.config_list(op)
            for op in self._catalogue.operations()
        ]
        return any(model in models for models in lists)


def _list_change(
    action: str, operation: str, before: tuple[str, ...] | None, after: tuple[str, ...] | None
) -> Change:
    target = list_field(operation)
    audit = {
        "action": action,
        "target": f"models:{operation}",
        "before": list(before) if before is not None else None,
        "after": list(after) if after is not None else None,
    }
    value = orjson.dumps(list(after)).decode() if after is not None else None
    return Change("models", target, value, audit)


def _price_change(
    action: str, model: str, before: ModelPrice | None, after: ModelPrice | None
) -> Change:
    audit = {
        "action": action,
        "target": f"price:{model}",
        "before": price_dict(before),
        "after": price_dict(after),
    }
    value = orjson.dumps(after.model_dump()).decode() if after is not None else None
    return Change("models", price_field(model), value, audit)
