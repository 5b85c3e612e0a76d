"""Streaming through a live gateway, with the official openai Python package as the caller:
partial images and the final image as the SDK's own event types, from the fake upstream and
from the sandbox, and a caller hanging up mid-stream settled as if it had stayed."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types import ImageEditCompletedEvent, ImageGenCompletedEvent, ImageGenPartialImageEvent
from support.config import EDITS_PRICE, KEYS, auth, base_config, edits_upstream
from support.fake_streams import StreamScript
from support.fake_upstream import FakeUpstream
from support.pngs import make_png, painted_scene
from support.servers import GatewayProcess

pytestmark = pytest.mark.e2e

USD_RULE = {"teams": {"vision": [{"unit": "usd", "limit": 10.0, "window": "month"}]}}
TEXT_RATE = EDITS_PRICE["text_input_per_1m_tokens"] / 1e6
OUTPUT_RATE = EDITS_PRICE["image_output_per_1m_tokens"] / 1e6
SETTLE_SECONDS = 10.0
NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture
def streaming(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream
) -> GatewayProcess:
    """A live gateway with the image models and a usd pool, before the fake upstream."""
    config = {**base_config(upstream.url), "upstream": edits_upstream(upstream.url)}
    return start_gateway({**config, "quotas": USD_RULE})


@pytest.fixture
def sdk() -> Iterator[Callable[[GatewayProcess], openai.OpenAI]]:
    """Clients changed in exactly two things, base_url and api_key; closed after the test."""
    clients: list[openai.OpenAI] = []

    def make(gateway: GatewayProcess) -> openai.OpenAI:
        clients.append(
            openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS["alice"], max_retries=0)
        )
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def usd_used(gateway: GatewayProcess) -> float:
    rules = httpx.get(gateway.url + "/v1/quota", headers=auth("alice")).json()["rules"]
    return float(next(rule["used"] for rule in rules if rule["unit"] == "usd"))


def settled_to(gateway: GatewayProcess, expected: float) -> float:
    """The usd used once it reads `expected` (settling runs after the stream), or the last
    reading after SETTLE_SECONDS."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while abs((value := usd_used(gateway)) - expected) > 1e-6 and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_the_sdk_streams_a_generation_with_partial_images(
    streaming: GatewayProcess, upstream: FakeUpstream, sdk: Callable[..., openai.OpenAI]
) -> None:
    """images.generate(stream=True, partial_images=2): two partial images then the final
    one, as the SDK's event types; charged the final usage."""
    script = StreamScript(partials=2)
    upstream.script = script.reply
    stream = sdk(streaming).images.generate(prompt="a red fox", stream=True, partial_images=2)
    events = list(stream)
    assert [type(e).__name__ for e in events] == [
        "ImageGenPartialImageEvent", "ImageGenPartialImageEvent", "ImageGenCompletedEvent",
    ]  # fmt: skip
    partials = [e for e in events if isinstance(e, ImageGenPartialImageEvent)]
    (done,) = [e for e in events if isinstance(e, ImageGenCompletedEvent)]
    assert [e.partial_image_index for e in partials] == [0, 1]
    assert done.usage.output_tokens == script.billed_output()
    expected = 12 * TEXT_RATE + script.billed_output() * OUTPUT_RATE
    assert settled_to(streaming, expected) == pytest.approx(expected, abs=1e-6)


def test_the_sdk_streams_an_edit(
    streaming: GatewayProcess, upstream: FakeUpstream, sdk: Callable[..., openai.OpenAI]
) -> None:
    """images.edit(stream=True) with two images: image_edit events; the upstream got both
    images as image[] and the stream's fields."""
    upstream.script = StreamScript(kind="image_edit", partials=1).reply
    stream = sdk(streaming).images.edit(
        image=[make_png(32), make_png(40)], prompt="add a hat", stream=True, partial_images=1
    )
    assert [e.type for e in stream] == ["image_edit.partial_image", "image_edit.completed"]
    (call,) = upstream.received
    assert call.fields["stream"] == "true" and call.fields["partial_images"] == "1"
    assert [part[0] for part in call.parts] == ["image[]", "image[]"]


def test_a_stream_cut_upstream_reaches_the_sdk_as_an_api_error(
    streaming: GatewayProcess, upstream: FakeUpstream, sdk: Callable[..., openai.OpenAI]
) -> None:
    """The upstream drops the connection after a partial image: the SDK has read that
    partial image, then raises an APIError (the gateway's error event), not a silent end."""
    upstream.script = StreamScript(partials=2, cut_after=1).reply
    stream = sdk(streaming).images.generate(prompt="a red fox", stream=True, partial_images=2)
    seen: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        seen.extend(event.type for event in stream)
    assert seen == ["image_generation.partial_image"]
    assert "stream was cut" in raised.value.message


def _access_lines(gateway: GatewayProcess, path: str) -> list[dict[str, Any]]:
    lines = re.findall(r"^.*\{\"request_id\".*$", gateway.output(), re.M)
    records = [json.loads(line[line.index("{") :]) for line in lines]
    return [r for r in records if r.get("path") == path]


def test_a_caller_hanging_up_mid_stream_is_settled_as_if_it_had_stayed(
    streaming: GatewayProcess, upstream: FakeUpstream
) -> None:
    """The caller reads the first partial image and hangs up; only once the gateway has
    logged the request's end does the upstream go on: it writes its whole stream, and the
    books hold exactly what the upstream produced (its completed usage)."""
    script = StreamScript(partials=3, hold_after=1)
    upstream.script = script.reply
    body = {"prompt": "a red fox", "stream": True, "partial_images": 3}
    with httpx.stream(
        "POST", streaming.url + "/v1/images/generations", json=body, headers=auth(), timeout=10
    ) as response:
        first = next(response.iter_bytes())
        assert first.startswith(b"event: image_generation.partial_image")
    # Hung up. Wait for the gateway to have seen it end, then let the upstream go on.
    deadline = time.monotonic() + SETTLE_SECONDS
    while not _access_lines(streaming, "/v1/images/generations"):
        assert time.monotonic() < deadline, "the gateway never ended the caller's request"
        time.sleep(0.05)
    script.gate.set()
    expected = 12 * TEXT_RATE + script.billed_output() * OUTPUT_RATE
    assert settled_to(streaming, expected) == pytest.approx(expected, abs=1e-6)
    assert script.written == len(script.events())  # read to its end


def test_a_caller_hanging_up_before_the_stream_opens_is_settled_the_same_way(
    streaming: GatewayProcess, upstream: FakeUpstream
) -> None:
    """The upstream has the request but has not answered; the caller hangs up; the call
    goes on (it was sent): once the upstream streams, the books hold its usage."""
    script = StreamScript(partials=1, hold_after=-1)
    upstream.script = script.reply
    body = json.dumps({"prompt": "a red fox", "stream": True, "partial_images": 1}).encode()
    head = (
        f"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {auth()['Authorization']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", streaming.port), timeout=10) as caller:
        caller.sendall(head + body)
        deadline = time.monotonic() + SETTLE_SECONDS
        while not upstream.received:  # sent upstream: from here the company may be billed
            assert time.monotonic() < deadline, "the request never reached the upstream"
            time.sleep(0.02)
    # Hung up before any answer. Wait for the gateway to have seen it, then answer.
    while not _access_lines(streaming, "/v1/images/generations"):
        assert time.monotonic() < deadline, "the gateway never saw the caller leave"
        time.sleep(0.05)
    script.gate.set()
    expected = 12 * TEXT_RATE + script.billed_output() * OUTPUT_RATE
    assert settled_to(streaming, expected) == pytest.approx(expected, abs=1e-6)


def test_the_sandbox_streams_both_operations_to_the_sdk(
    start_gateway: Callable[..., GatewayProcess], sdk: Callable[..., openai.OpenAI]
) -> None:
    """`base_url: sandbox`: a streamed generation and a streamed edit, offline, read by
    the SDK; the partial images cost 100 output tokens each in the final usage."""
    config = {**base_config("sandbox"), "upstream": edits_upstream("sandbox")}
    client = sdk(start_gateway(config))
    generated = list(client.images.generate(prompt="a yellow star", stream=True, partial_images=2))
    assert [e.type for e in generated] == ["image_generation.partial_image"] * 2 + [
        "image_generation.completed"
    ]
    edited = list(
        client.images.edit(image=painted_scene(), prompt="a red hat", stream=True, partial_images=1)
    )
    assert [e.type for e in edited] == ["image_edit.partial_image", "image_edit.completed"]
    (made,) = [e for e in generated if isinstance(e, ImageGenCompletedEvent)]
    (done,) = [e for e in edited if isinstance(e, ImageEditCompletedEvent)]
    assert made.usage.output_tokens - 2 * 100 == done.usage.output_tokens - 100


def run_node_stream(
    gateway: GatewayProcess, operation: str, partial_images: int, image: Path
) -> dict[str, Any]:
    """One streamed call by the npm SDK (node/stream.mjs); its JSON outcome line."""
    node = shutil.which("node")
    if node is None:  # as test_other_clients: skipped on a laptop, a failure in CI
        if os.environ.get("CI"):
            pytest.fail("node is required in CI")
        pytest.skip("node not installed")
    if not (NODE_DIR / "node_modules" / "openai").exists():
        pytest.fail("the openai npm package is not installed: run `make test`")
    args = [node, str(NODE_DIR / "stream.mjs"), gateway.url + "/v1", KEYS["alice"]]
    args += [operation, str(partial_images), str(image)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.node
@pytest.mark.parametrize(("operation", "kind"), [("generate", "image_generation"),
                                                 ("edit", "image_edit")])  # fmt: skip
def test_the_node_sdk_streams_generations_and_edits(
    streaming: GatewayProcess, upstream: FakeUpstream, tmp_path: Path, operation: str, kind: str
) -> None:
    """The npm SDK's `for await` over a streamed generate or edit (its image a file stream,
    sent chunked): the partial images in order, then the final image with its usage."""
    script = StreamScript(kind=kind, partials=2)
    upstream.script = script.reply
    image = tmp_path / "in.png"
    image.write_bytes(make_png(48))
    result = run_node_stream(streaming, operation, 2, image)
    assert result["ok"], result
    events = result["events"]
    assert [(e["type"], e["index"]) for e in events] == [
        (f"{kind}.partial_image", 0), (f"{kind}.partial_image", 1), (f"{kind}.completed", None),
    ]  # fmt: skip
    assert events[-1]["outputTokens"] == script.billed_output()
    (call,) = upstream.received
    asked = call.json if call.json is not None else call.fields
    assert str(asked["partial_images"]) == "2"
