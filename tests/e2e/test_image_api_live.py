"""Generations and edits on live gateways: the official python and node `openai` packages
and curl as callers (only base_url and api_key changed), one quota pool over two processes
and three endpoints, and identical edits coalesced across processes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.callers import open_raw, raw_head
from support.config import EDITS_MODEL, KEYS, USER_SECRET, auth, base_config, edits_upstream
from support.fake_upstream import FakeUpstream, Reply, any_images_response
from support.pngs import make_png
from support.servers import GatewayProcess
from support.tools import NODE_DIR, need

from gateway.upstream.client import multipart_parts

EDITS = "/v1/images/edits"
USD_POOL = {"default": [], "teams": {"vision": [{"unit": "usd", "limit": 5.0, "window": "day"}]}}
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")]
PSEUDONYM = {
    user: hmac.new(USER_SECRET.encode(), user.encode(), hashlib.sha256).hexdigest() for user in KEYS
}


def images_config(upstream: FakeUpstream, **extra: Any) -> dict[str, Any]:
    """Variations forwarded as they are; generations and edits to the image model."""
    upstream.script = lambda r: Reply(body=any_images_response(r))
    section = {**edits_upstream(upstream.url), "adapter": "variations"}
    return {**base_config(upstream.url), "upstream": section, **extra}


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream) -> GatewayProcess:
    return start_gateway(images_config(upstream, cache={"enabled": True}))


def sdk(gateway: GatewayProcess, user: str = "alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS[user], max_retries=0)


def test_python_sdk_generate(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    """client.images.generate: the images and usage come back; upstream saw JSON with the
    options and the pseudonym, not the caller's user."""
    with sdk(gateway) as client:
        result = client.images.generate(
            prompt="a lighthouse at dusk", n=2, size="1024x1536", quality="low", user="spoof"
        )
    assert result.data is not None and len(result.data) == 2
    assert base64.b64decode(result.data[0].b64_json or "").startswith(b"\x89PNG")
    assert result.usage is not None and result.usage.output_tokens == 2000
    [seen] = upstream.received
    assert seen.path == "/v1/images/generations" and seen.json is not None
    assert seen.json["safety_identifier"] == PSEUDONYM["alice"] and "user" not in seen.json
    assert (seen.json["n"], seen.json["size"], seen.json["model"]) == (2, "1024x1536", EDITS_MODEL)


def test_python_sdk_edit_with_several_images_and_a_mask(
    gateway: GatewayProcess, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """client.images.edit with three images (files on disk) and a mask: all reach the
    upstream in order, with the prompt; a second identical call is a cache hit."""
    pngs = [make_png(32), make_png(40), make_png(48)]
    paths = []
    for i, data in enumerate(pngs):
        paths.append(tmp_path / f"in{i}.png")
        paths[-1].write_bytes(data)
    mask = make_png(32, noise=True, alpha=True)
    with sdk(gateway) as client:
        for _ in range(2):
            files = [path.open("rb") for path in paths]
            raw = client.images.with_raw_response.edit(
                image=files, mask=mask, prompt="make it snow", safety_identifier="spoof"
            )
            for f in files:
                f.close()
            assert len(raw.parse().data or []) == 1
        assert raw.headers["x-gateway-cache"] == "HIT"
    [seen] = upstream.received
    assert [data for name, _, _, data in seen.parts if name == "image[]"] == pngs
    assert [data for name, _, _, data in seen.parts if name == "mask"] == [mask]
    assert seen.fields["prompt"] == "make it snow"
    assert seen.fields["safety_identifier"] == PSEUDONYM["alice"]


def test_python_sdk_sees_the_validation_refusal(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    """A size the model refuses reaches the SDK as BadRequestError naming `size`."""
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="x", size="1000x1000")
    assert caught.value.code == "invalid_value" and caught.value.param == "size"
    assert upstream.received == []


def run_node(gateway: GatewayProcess, operation: str, *args: str) -> dict[str, Any]:
    """One image_api.mjs call by the npm SDK; its JSON outcome line."""
    node = need("node")
    if not (NODE_DIR / "node_modules" / "openai").exists():
        pytest.fail("the openai npm package is not installed: run `make test`")
    script = str(NODE_DIR / "image_api.mjs")
    command = [node, script, gateway.url + "/v1", KEYS["carol"], operation, *args]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.node
def test_node_sdk_generate_and_edit(
    gateway: GatewayProcess, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """images.generate and images.edit (file streams, chunked, as image[] with a mask) by the
    npm SDK; the caller's user never goes upstream."""
    generated = run_node(gateway, "generate", EDITS_MODEL)
    assert generated["ok"] and generated["count"] == 2, generated
    paths = []
    for i, data in enumerate((make_png(24, noise=True, alpha=True), make_png(24), make_png(56))):
        paths.append(tmp_path / f"n{i}.png")
        paths[-1].write_bytes(data)
    edited = run_node(gateway, "edit", *(str(p) for p in paths))
    assert edited["ok"] and edited["count"] == 1 and edited["usage"], edited
    generation, edit = upstream.received
    assert (
        generation.json is not None and generation.json["safety_identifier"] == PSEUDONYM["carol"]
    )
    images = [data for name, _, _, data in edit.parts if name.startswith("image")]
    assert images == [p.read_bytes() for p in paths[1:]]
    assert [data for name, _, _, data in edit.parts if name == "mask"] == [paths[0].read_bytes()]
    assert "node-caller-chosen-user" not in json.dumps(generation.json) + str(edit.fields)


def test_curl_edit_with_image_array(
    gateway: GatewayProcess, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """`curl -F "image[]=@a.png" -F "image[]=@b.png" -F prompt=...` works as the README
    shows."""
    curl = need("curl")
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    first.write_bytes(make_png(20))
    second.write_bytes(make_png(28))
    args = [
        curl, "-sS", gateway.url + "/v1/images/edits", "-H", f"Authorization: Bearer {KEYS['bob']}",
        "-F", f"image[]=@{first}", "-F", f"image[]=@{second}", "-F", "prompt=add a moon",
        "-F", "quality=low",
    ]  # fmt: skip
    body = json.loads(subprocess.run(args, capture_output=True, timeout=30, check=True).stdout)
    assert len(body["data"]) == 1 and body["usage"]["input_tokens"] > 0
    [seen] = upstream.received
    assert [data for _, _, _, data in seen.parts] == [first.read_bytes(), second.read_bytes()]
    assert seen.fields["quality"] == "low"


async def _mixed(urls: list[str], count: int, start: asyncio.Event) -> list[int]:
    """`count` calls over the gateways, cycling variations, generations and edits, all
    released at once by `start`: their statuses."""
    png = make_png(16)

    async def call(client: httpx.AsyncClient, i: int) -> int:
        url = urls[i % len(urls)]
        await start.wait()
        if i % 3 == 0:
            files = {"image": ("a.png", png, "image/png")}
            response = await client.post(url + "/v1/images/variations", files=files, headers=auth())
        elif i % 3 == 1:
            body = {"prompt": f"scene {i}"}
            response = await client.post(url + "/v1/images/generations", json=body, headers=auth())
        else:
            files = {"image[]": ("a.png", png, "image/png")}
            data = {"prompt": f"edit {i}"}
            response = await client.post(
                url + "/v1/images/edits", files=files, data=data, headers=auth()
            )
        return response.status_code

    async with httpx.AsyncClient(timeout=30) as client:
        tasks = [asyncio.ensure_future(call(client, i)) for i in range(count)]
        await asyncio.sleep(0)  # every call waits at the barrier
        start.set()
        return list(await asyncio.gather(*tasks))


@pytest.mark.redis
def test_two_processes_admit_exactly_k_of_n_mixing_endpoints(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> None:
    """45 calls released together over two processes, a third of each endpoint, against
    one requests pool of 12: exactly 12 are admitted and reach the upstream."""
    quotas = {
        "default": [],
        "teams": {"vision": [{"unit": "requests", "limit": 12, "window": "day"}]},
    }
    config = images_config(upstream, quotas=quotas)
    gateways = [start_gateway(config, {"REDIS_URL": clean_redis}) for _ in range(2)]

    async def run() -> list[int]:
        return await _mixed([g.url for g in gateways], 45, asyncio.Event())

    statuses = asyncio.run(run())
    assert statuses.count(200) == 12 and statuses.count(429) == 33
    assert len(upstream.received) == 12


@pytest.mark.redis
def test_identical_edits_coalesce_across_two_processes(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> None:
    """Twelve identical edits over two processes while the upstream is slow: one upstream
    call; the others are answered with its images, as COALESCED."""
    config = images_config(upstream, cache={"enabled": True})
    upstream.script = lambda r: Reply(body=any_images_response(r), delay=1.0)
    gateways = [start_gateway(config, {"REDIS_URL": clean_redis}) for _ in range(2)]
    png = make_png(24)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            calls = [
                client.post(
                    gateways[i % 2].url + "/v1/images/edits",
                    files=[("image[]", ("a.png", png, "image/png"))] * 2,
                    data={"prompt": "paint it blue"},
                    headers=auth("bob" if i % 2 else "alice"),
                )
                for i in range(12)
            ]
            return list(await asyncio.gather(*calls))

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 12
    results = sorted(r.headers["x-gateway-cache"] for r in responses)
    assert results.count("MISS") == 1 and results.count("COALESCED") == 11
    assert len({r.content for r in responses}) == 1
    assert len(upstream.received) == 1


@pytest.mark.redis
def test_hanging_up_after_dispatch_is_charged_cached_and_the_retry_is_a_hit(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> None:
    """An edit whose caller hangs up once it is upstream is not cancelled: it is charged as
    delivered (the usage's cost) and cached, and the caller's retry is a hit."""
    config = images_config(upstream, cache={"enabled": True}, quotas=USD_POOL)
    upstream.script = lambda r: Reply(body=any_images_response(r), delay=1.0)
    gateway = start_gateway(config, {"REDIS_URL": clean_redis})
    png = make_png(24)
    parts, content_type = multipart_parts(
        {"prompt": "a hat"}, [("image", "a.png", "image/png", png)]
    )
    body = b"".join(parts)
    head = raw_head(gateway.port, length=len(body), content_type=content_type, path=EDITS)
    sock = open_raw(gateway.port, head + body)
    deadline = time.monotonic() + 10
    while not upstream.received and time.monotonic() < deadline:
        time.sleep(0.02)
    sock.close()
    time.sleep(1.5)  # the call finishes in the background
    files = {"image": ("a.png", png, "image/png")}
    retry = httpx.post(gateway.url + EDITS, files=files, data={"prompt": "a hat"}, headers=auth())
    assert (retry.status_code, retry.headers["x-gateway-cache"]) == (200, "HIT")
    assert len(upstream.received) == 1
    quota = httpx.get(gateway.url + "/v1/quota", headers=auth()).json()
    [usd] = [rule["used"] for rule in quota["rules"] if rule["unit"] == "usd"]
    assert usd == pytest.approx((40 * 5 + 300 * 10 + 1000 * 40) / 1e6)  # the usage's cost


def test_request_series_carry_the_endpoint(gateway: GatewayProcess) -> None:
    """gateway_requests_total and the duration histogram count each endpoint apart, every
    endpoint's series there from the start."""
    with sdk(gateway) as client:
        client.images.generate(prompt="a fox")
        with pytest.raises(openai.BadRequestError):
            client.images.edit(image=make_png(16), prompt="x", n=11)
    text = httpx.get(gateway.url + "/metrics").text
    found = {
        (sample.labels.get("endpoint"), sample.labels.get("outcome")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "gateway_requests_total"
    }
    assert found[("generations", "ok")] == 1 and found[("edits", "invalid")] == 1
    assert found[("variations", "ok")] == 0 and found[("edits", "ok")] == 0
