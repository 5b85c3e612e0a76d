"""The model catalogue: which image models serve an upstream operation, in order, what each
costs, and whether the upstream still has it. One owner for all three, so the adapters,
the admin plane, the watch and the metrics ask the same thing the same way.

- **Lists.** Each operation (an upstream endpoint: `edits`) has an ordered model list, the
  config's, or one an admin set at run time (`RuntimeModels`, from the admin plane's
  state, followed by every replica within a second). The first available model serves.
- **Prices.** Per model: the config's price table, or one set at run time. `estimate`
  is what one image is reserved at; `cost` what a call's `usage` says it cost.
- **Availability**, as this process knows it: what the upstream's `/models` said at the
  last reading (`observe`, from the watch), and whether the upstream refused the model as
  gone (`refused`). A refused model is not tried again by this process until `/models`
  lists it again, with no shutdown date passed, an hour or more later.

Nothing here does I/O: the watch reads `/models`, the adapters make the calls, and a
failover is told to `on_failover` (which logs, counts and audits it).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from gateway import metrics
from gateway.settings.models import ModelPrice, Quality
from gateway.upstream import pricing

log = logging.getLogger("gateway.models")

ModelOperation = Literal["edits"]  # the upstream endpoints a model list serves
Source = Literal["config", "runtime"]
RETRY_REFUSED_SECONDS = 3600.0  # a refused model listed again is tried after this long


@dataclass(frozen=True)
class RuntimeModels:
    """Model lists and prices an admin set at run time (empty: the config's apply)."""

    lists: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # by operation
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)  # by model


class Listing(NamedTuple):
    """What the upstream's /models says of one model."""

    listed: bool
    shutdown_at: float | None = None  # epoch seconds, when it gives a shutdown date


class Failover(NamedTuple):
    """The upstream refused `model` as gone: calls of `operation` go to `next_model` now
    (None: no model is left)."""

    model: str
    operation: str
    next_model: str | None
    upstream_request_id: str | None
    at: float


@dataclass
class _Seen:
    """What this process knows of one model upstream."""

    listed: bool | None = None  # by the last /models reading; None: not known
    shutdown_at: float | None = None
    refused_at: float | None = None  # refused by the upstream as gone

    @property
    def available(self) -> bool:
        return self.refused_at is None and self.listed is not False


@dataclass(frozen=True)
class ModelState:
    """One model as the admin view and the metrics show it."""

    model: str
    operations: tuple[str, ...]  # the lists in force that name it
    listed: bool | None
    shutdown_at: float | None
    refused_at: float | None
    available: bool
    price: ModelPrice | None
    price_source: Source | None


class WatchStatus(NamedTuple):
    """The last reading of /models: when, and its failure if it failed."""

    checked_at: float | None = None
    error: str | None = None


class ModelCatalogue:
    """The ordered model lists, the price tables and the availability of the models."""

    def __init__(
        self,
        lists: Mapping[str, tuple[str, ...]],
        prices: Mapping[str, ModelPrice],
        *,
        runtime: Callable[[], RuntimeModels] = RuntimeModels,
        on_failover: Callable[[Failover], None] = lambda failover: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lists, self._prices = dict(lists), dict(prices)
        self._runtime, self._on_failover, self._clock = runtime, on_failover, clock
        self._seen: dict[str, _Seen] = {}
        self.watch = WatchStatus()

    def operations(self) -> tuple[str, ...]:
        """The operations that have a model list."""
        return tuple(self._lists)

    def models(self, operation: str) -> tuple[str, ...]:
        """The models of `operation` in order of preference: the list in force."""
        return self._runtime().lists.get(operation) or self._lists.get(operation, ())

    def list_source(self, operation: str) -> Source:
        """Where the list in force comes from."""
        return "runtime" if self._runtime().lists.get(operation) else "config"

    def config_list(self, operation: str) -> tuple[str, ...]:
        """The config's list for `operation` (what an unset runtime list falls back to)."""
        return self._lists.get(operation, ())

    def price(self, model: str) -> ModelPrice | None:
        """The price table in force for `model`, or None when it has none."""
        return self._runtime().prices.get(model) or self._prices.get(model)

    def price_source(self, model: str) -> Source | None:
        """Where `model`'s price table comes from, or None when it has none."""
        if model in self._runtime().prices:
            return "runtime"
        return "config" if model in self._prices else None

    def priced(self) -> tuple[str, ...]:
        """Every model with a price table in force (the config's or a runtime one)."""
        return tuple(sorted({*self._prices, *self._runtime().prices}))

    def config_price(self, model: str) -> ModelPrice | None:
        """The config's price table for `model`."""
        return self._prices.get(model)

    def candidates(self, operation: str) -> tuple[str, ...]:
        """The models that can serve `operation` now, in order: the list in force, less
        those this process knows the upstream no longer has."""
        return tuple(m for m in self.models(operation) if self._state(m).available)

    def serving(self, operation: str) -> str | None:
        """The model that serves `operation` now, or None when none is available."""
        candidates = self.candidates(operation)
        return candidates[0] if candidates else None

    def estimate(self, model: str, size: str, quality: Quality) -> float:
        """USD one image of `size` at `quality` by `model` is reserved at."""
        return pricing.per_image(self._priced(model), size, quality)

    def cost(self, model: str, usage: Mapping[str, Any], kind: pricing.InputKind) -> float | None:
        """USD a call of `model` cost by its `usage`, or None without usable counts."""
        return pricing.usage_cost(usage, self._priced(model), kind)

    def _priced(self, model: str) -> ModelPrice:
        price = self.price(model)
        if price is None:  # lists only take priced models (config and admin plane check)
            raise LookupError(f"no price for the model {model}")
        return price

    def _state(self, model: str) -> _Seen:
        return self._seen.setdefault(model, _Seen())

    def refused(self, model: str, operation: str, upstream_request_id: str | None) -> None:
        """The upstream refused `model` as gone: it is not tried again here. The first
        refusal (of this process) is a failover, told to `on_failover`."""
        seen = self._state(model)
        if seen.refused_at is not None:
            return
        seen.refused_at = self._clock()
        failover = Failover(
            model, operation, self.serving(operation), upstream_request_id, seen.refused_at
        )
        self._on_failover(failover)

    def watched(self) -> tuple[str, ...]:
        """Every model of a list in force, once, in order: what the watch asks about."""
        found = (m for operation in self._lists for m in self.models(operation))
        return tuple(dict.fromkeys(found))

    def observe(self, listings: Mapping[str, Listing | None], error: str | None = None) -> None:
        """A reading of /models: each model's listing (None: not known this time), or the
        reading's failure (`error`: what is known stays as it was)."""
        now = self._clock()
        self.watch = WatchStatus(now, error)
        for model, listing in listings.items():
            if listing is None:
                continue
            seen = self._state(model)
            seen.listed, seen.shutdown_at = listing.listed, listing.shutdown_at
            if seen.refused_at is not None and _back(listing, seen.refused_at, now):
                seen.refused_at = None

    def states(self) -> list[ModelState]:
        """Every model of a list in force, in order, as this process knows it."""
        return [self._model_state(model) for model in self.watched()]

    def _model_state(self, model: str) -> ModelState:
        seen = self._state(model)
        named = tuple(op for op in self.operations() if model in self.models(op))
        price, source = self.price(model), self.price_source(model)
        listed, shutdown_at, refused_at = seen.listed, seen.shutdown_at, seen.refused_at
        return ModelState(
            model, named, listed, shutdown_at, refused_at, seen.available, price, source
        )


def _back(listing: Listing, refused_at: float, now: float) -> bool:
    """Whether a refused model, listed again, may be tried again."""
    shut = listing.shutdown_at is not None and listing.shutdown_at <= now
    return listing.listed and not shut and now - refused_at >= RETRY_REFUSED_SECONDS


def failover_reporter(audit: Callable[[Mapping[str, Any]], None]) -> Callable[[Failover], None]:
    """What a failover leaves: an error log line, `gateway_upstream_model_failovers_total`
    and an entry in the admin audit trail (by `audit`, in the background)."""
    replica = f"{socket.gethostname()} pid {os.getpid()}"

    def report(failover: Failover) -> None:
        after = failover.next_model or "none: callers get 503 upstream_model_unavailable"
        log.error(
            "upstream refused the model %s as gone: %s calls now go to %s",
            failover.model, failover.operation, after,
        )  # fmt: skip
        metrics.MODEL_FAILOVERS.labels(failover.model).inc()
        audit(
            {
                "action": "model.failover",
                "target": f"model:{failover.model}",
                "actor": "gateway",
                "credential": {"source": "gateway"},
                "before": {"operation": failover.operation, "serving": failover.model},
                "after": {"operation": failover.operation, "serving": failover.next_model},
                "request_id": None,
                "upstream_request_id": failover.upstream_request_id,
                "source_address": replica,
            }
        )

    return report
