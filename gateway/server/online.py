"""`gateway config check --online`: ask the upstream, before a deploy, what the watch asks
it once the gateway runs: whether it has each model of the edits adapter's list, and the
shutdown date it announces for each (`gateway.upstream.watch`).

It reads the company's key from the environment (never printing it); the sandbox is asked
in process, with the config's switches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import httpx

from gateway.settings.config import GatewayConfig
from gateway.store.memory import MemoryCacheStore
from gateway.upstream import sandbox
from gateway.upstream.catalogue import Listing
from gateway.upstream.client import Account
from gateway.upstream.hosting import ImageHost
from gateway.upstream.watch import WatchFailed, read_listings

SOON_SECONDS = 30 * 86_400  # as the alert: a shutdown within 30 days is said loudly


class OnlineProblem(Exception):
    """The upstream cannot be asked, or has none of the models; the message says which."""


def _client(config: GatewayConfig) -> tuple[httpx.AsyncClient, str]:
    upstream = config.upstream
    if not upstream.is_sandbox:
        return httpx.AsyncClient(follow_redirects=False), upstream.base_url
    models = (*upstream.models, *(upstream.edits.model_list if upstream.edits else ()))
    app = sandbox.create_sandbox_app(
        ImageHost(MemoryCacheStore(), "http://127.0.0.1"),
        max_side=config.limits.max_image_side,
        models=models,
        switches=upstream.sandbox,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app)), sandbox.BASE_URL


async def _ask(
    config: GatewayConfig, account: Account, models: tuple[str, ...]
) -> dict[str, Listing]:
    client, base_url = _client(config)
    async with client:
        return await read_listings(client, account, base_url, models)


def _line(model: str, listing: Listing, now: float) -> str:
    if not listing.listed:
        return f"  {model}: NOT AVAILABLE: the upstream does not have it"
    if listing.shutdown_at is None:
        return f"  {model}: available, no shutdown date announced"
    day = datetime.fromtimestamp(listing.shutdown_at, UTC).date().isoformat()
    days = (listing.shutdown_at - now) / 86_400
    if days <= 0:
        return f"  {model}: available, but its shutdown date {day} has passed"
    warning = "SOON: " if listing.shutdown_at - now < SOON_SECONDS else ""
    return f"  {model}: available, {warning}shuts down on {day} (in {days:.0f} days)"


def check_online(config: GatewayConfig, env: Mapping[str, str]) -> list[str]:
    """What the upstream says of each model of the list, as lines to print; raises
    `OnlineProblem` when it cannot be asked or has none of them."""
    upstream, edits = config.upstream, config.upstream.edits
    if upstream.adapter != "edits" or edits is None:
        return ["online: the variations adapter has no model list to ask about"]
    key = env.get(upstream.api_key_env, "")
    if not key and not upstream.is_sandbox:
        raise OnlineProblem(f"--online needs {upstream.api_key_env} set (the company's key)")
    account = Account(key, upstream.organization, upstream.project)
    try:
        listings = asyncio.run(_ask(config, account, edits.model_list))
    except WatchFailed as exc:
        raise OnlineProblem(f"cannot read the upstream's models: {exc}") from None
    now = time.time()
    lines = ["online: the upstream's /models says:"]
    lines += [_line(model, listings[model], now) for model in edits.model_list]
    if not any(listing.listed for listing in listings.values()):
        raise OnlineProblem("\n".join([*lines, "no model of upstream.edits.models is available"]))
    return lines
