"""The sandbox speaking today's model: b64 only, `usage` with its details or without, and the
models' lifecycle (a shutdown date in /models, a model refused as retired), so the whole
story runs offline."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from support.config import EDITS_MODEL, EDITS_PRICE, auth, edits_upstream
from support.fixtures import AppFactory
from support.pngs import make_png
from support.requests import post_variation

from gateway.settings.models import VARIATION_PROMPT, SandboxConfig
from gateway.store.memory import MemoryCacheStore
from gateway.upstream import sandbox
from gateway.upstream.hosting import ImageHost

USD_RULE = {"default": [{"unit": "usd", "limit": 100.0, "window": "day"}]}
TEXT = len(VARIATION_PROMPT) // 4  # the sandbox's text tokens for the default prompt


def sandbox_gateway(make_client: AppFactory, **switches: Any) -> TestClient:
    """The edits adapter on the sandbox: gpt-image-test, then gpt-image-next; `switches` as
    upstream.sandbox."""
    section = edits_upstream("sandbox")
    section["edits"] = {
        "models": [EDITS_MODEL, "gpt-image-next"],
        "prices": {EDITS_MODEL: EDITS_PRICE, "gpt-image-next": EDITS_PRICE},
    }
    upstream = {**section, "sandbox": switches, "watch_seconds": 0.05}
    return make_client({"upstream": upstream, "quotas": USD_RULE})


def usd(client: TestClient) -> float:
    (rule,) = client.get("/v1/quota", headers=auth("alice")).json()["rules"]
    return float(rule["used"])


def test_usage_with_details_prices_text_and_image_input_apart(make_client: AppFactory) -> None:
    """The default shape: the prompt at the text rate, the image at the image input rate,
    1767 output tokens per medium image (gpt-image-2's)."""
    client = sandbox_gateway(make_client)
    assert post_variation(client, fields={"n": "2"}).status_code == 200
    assert usd(client) == pytest.approx((TEXT * 5 + 388 * 10 + 2 * 1767 * 40) / 1e6, abs=1e-6)


def test_usage_without_details_prices_an_edits_input_as_images(make_client: AppFactory) -> None:
    """usage_details off: totals only, and the whole input of an edit at the image rate."""
    client = sandbox_gateway(make_client, usage_details=False)
    assert post_variation(client, fields={"n": "2"}).status_code == 200
    assert usd(client) == pytest.approx(((TEXT + 388) * 10 + 2 * 1767 * 40) / 1e6, abs=1e-6)


def metrics_line(client: TestClient, name: str, model: str) -> str | None:
    found = re.search(rf'^{name}{{model="{model}"}} (\S+)$', client.get("/metrics").text, re.M)
    return found[1] if found else None


def wait_for(client: TestClient, name: str, model: str, value: str) -> str | None:
    """The series' value once it reads `value` (the watch runs beside the requests)."""
    deadline = time.monotonic() + 5
    while (found := metrics_line(client, name, model)) != value and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def test_a_retired_model_is_refused_and_the_next_one_serves(make_client: AppFactory) -> None:
    """retired: the sandbox refuses the first model (and leaves it out of /models); the
    caller is served by the next one."""
    client = sandbox_gateway(make_client, retired=[EDITS_MODEL])
    response = post_variation(client)
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-upstream-model"] == "gpt-image-next"
    available = "gateway_upstream_model_available"
    assert wait_for(client, available, EDITS_MODEL, "0.0") == "0.0"
    assert metrics_line(client, available, "gpt-image-next") == "1.0"


def test_a_shutdown_date_reaches_the_metric(make_client: AppFactory) -> None:
    """shutdown_dates: /models lists it, and the gateway exposes it as a Unix time."""
    client = sandbox_gateway(make_client, shutdown_dates={"gpt-image-next": "2027-03-01"})
    name = "gateway_upstream_model_shutdown_timestamp_seconds"
    assert wait_for(client, name, "gpt-image-next", "1.8038592e+09") == "1.8038592e+09"
    assert metrics_line(client, name, EDITS_MODEL) is None


async def _sandbox_call(
    method: str, path: str, switches: SandboxConfig, **kwargs: Any
) -> httpx.Response:
    app = sandbox.create_sandbox_app(
        ImageHost(MemoryCacheStore(), "http://gateway.test"),
        max_side=4096, models=("gpt-image-2",), switches=switches,
    )  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=sandbox.BASE_URL) as client:
        return await client.request(method, sandbox.BASE_URL + path, **kwargs)


def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One call to the sandbox app, with a shutdown date for gpt-image-2 and old-1 retired."""
    switches = SandboxConfig(retired=("old-1",), shutdown_dates={"gpt-image-2": "2027-03-01"})
    return asyncio.run(_sandbox_call(method, path, switches, **kwargs))


def test_the_sandbox_lists_its_models_as_openai_does() -> None:
    """GET /models: model objects with their shutdown_date; an entry of its own for any
    model; a retired one 404 model_not_found."""
    listed = call("GET", "/models").json()
    assert listed["object"] == "list"
    assert [(m["id"], m["object"], m["shutdown_date"]) for m in listed["data"]] == [
        ("gpt-image-2", "model", "2027-03-01")
    ]
    assert call("GET", "/models/gpt-image-9").json()["shutdown_date"] is None
    gone = call("GET", "/models/old-1")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"


def test_the_sandbox_edits_answer_b64_only_with_usage() -> None:
    """An edit: b64_json and usage with both details blocks; `response_format` is refused,
    as gpt-image-2 takes none; a retired model is 404 model_not_found."""
    files = {"image": ("i.png", make_png(16), "image/png")}
    fields = {"model": "gpt-image-2", "prompt": "p", "n": "1", "safety_identifier": "x"}
    answer = call("POST", "/images/edits", data=fields, files=files).json()
    assert set(answer["data"][0]) == {"b64_json"}
    assert set(answer["usage"]) >= {"input_tokens_details", "output_tokens_details"}
    refused = call("POST", "/images/edits", data={**fields, "response_format": "url"}, files=files)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "response_format"
    gone = call("POST", "/images/edits", data={**fields, "model": "old-1"}, files=files)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"
