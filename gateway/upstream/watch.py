"""The watch on the upstream's models: which of the catalogue's models the upstream still
has, and the shutdown date it announces for each.

At start-up and every `upstream.watch_seconds` it reads `GET {base_url}/models` (and, for a
model that list leaves out, the model's own entry, `GET {base_url}/models/{model}`) with
the company's key, and tells the catalogue (`ModelCatalogue.observe`). OpenAI's model
objects carry an optional `shutdown_date`, "YYYY-MM-DD" or null (OpenAI's API reference
and the openai SDKs, since August 2026); a Unix timestamp or a full ISO 8601 time is read
too, for upstreams that give one. The watch runs beside the requests and never holds one
up: a reading that fails is a log line and `gateway_upstream_model_watch_failures_total`,
and what was known stays as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from gateway import metrics
from gateway.upstream.catalogue import Listing, ModelCatalogue
from gateway.upstream.client import Account, account_headers

log = logging.getLogger("gateway.models")
READ_TIMEOUT_SECONDS = 30.0


class WatchFailed(Exception):
    """The upstream's models could not be read; the message says why (never a secret)."""


def shutdown_time(value: object) -> float | None:
    """A `shutdown_date` as epoch seconds: a Unix timestamp, an ISO 8601 date (its first
    instant, UTC) or time; None for null or anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _listing(entry: Mapping[str, Any]) -> Listing:
    return Listing(True, shutdown_time(entry.get("shutdown_date")))


async def _get(client: httpx.AsyncClient, url: str, account: Account) -> httpx.Response:
    try:
        return await client.get(url, headers=account_headers(account), timeout=READ_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise WatchFailed(f"the upstream could not be reached ({type(exc).__name__})") from exc


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise WatchFailed("the upstream's answer is not JSON") from None


def _refusal(response: httpx.Response) -> WatchFailed:
    if response.status_code in (401, 403):
        return WatchFailed(f"the upstream refused the company's key (HTTP {response.status_code})")
    return WatchFailed(f"the upstream answered HTTP {response.status_code}")


async def read_listings(
    client: httpx.AsyncClient, account: Account, base_url: str, models: Sequence[str]
) -> dict[str, Listing]:
    """What the upstream says of each of `models`; raises `WatchFailed`."""
    root = base_url.rstrip("/")
    response = await _get(client, root + "/models", account)
    if response.status_code != 200:
        raise _refusal(response)
    answer = _json(response)
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise WatchFailed("the upstream's model list has no data")
    listed = {e["id"]: e for e in data if isinstance(e, dict) and isinstance(e.get("id"), str)}
    found = {model: _listing(listed[model]) for model in models if model in listed}
    for model in models:
        if model not in found:
            found[model] = await _own_entry(client, account, root, model)
    return found


async def _own_entry(client: httpx.AsyncClient, account: Account, root: str, model: str) -> Listing:
    """A model the list leaves out, by its own entry: 404 means the upstream lacks it."""
    response = await _get(client, f"{root}/models/{quote(model, safe='')}", account)
    if response.status_code == 404:
        return Listing(False)
    if response.status_code != 200:
        raise _refusal(response)
    entry = _json(response)
    return _listing(entry) if isinstance(entry, dict) else Listing(True)


class ModelWatch:
    """Reads the upstream's models into the catalogue now and every `every_seconds`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        account: Account,
        base_url: str,
        catalogue: ModelCatalogue,
        every_seconds: float,
    ) -> None:
        self._client, self._account, self._base_url = client, account, base_url
        self._catalogue, self._every = catalogue, every_seconds
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> None:
        """One reading; a failure is counted and logged, never raised."""
        catalogue = self._catalogue
        models = catalogue.watched()
        if not models:
            return
        serving = {op: catalogue.serving(op) for op in catalogue.operations()}
        known = {state.model: Listing(state.listed is not False, state.shutdown_at)
                 for state in catalogue.states() if state.listed is not None}  # fmt: skip
        try:
            listings = await read_listings(self._client, self._account, self._base_url, models)
        except WatchFailed as exc:
            metrics.MODEL_WATCH_FAILURES.inc()
            log.warning("could not read the upstream's models: %s", exc)
            catalogue.observe({}, str(exc))
            return
        catalogue.observe(dict(listings))
        _say_what_changed(catalogue, serving, known, listings)

    async def _follow(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self._every)

    def start(self) -> None:
        """Read now, in the background, then every `every_seconds`."""
        self._task = asyncio.create_task(self._follow())

    async def close(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _say_what_changed(
    catalogue: ModelCatalogue,
    serving: Mapping[str, str | None],
    known: Mapping[str, Listing],
    listings: Mapping[str, Listing],
) -> None:
    """A log line for each model whose listing or shutdown date this reading changed, and
    for each operation whose serving model it changed."""
    for model, listing in listings.items():
        if known.get(model) == listing:
            continue
        if not listing.listed:
            log.warning("the upstream does not list the model %s", model)
        elif listing.shutdown_at is not None:
            day = datetime.fromtimestamp(listing.shutdown_at, UTC).date().isoformat()
            log.warning("the upstream says the model %s shuts down on %s", model, day)
    for operation, was in serving.items():
        now = catalogue.serving(operation)
        if now != was:
            log.error("%s calls now go to %s (was %s)", operation, now or "no model", was)
