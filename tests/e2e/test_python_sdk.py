"""The official openai Python package as a caller of a live gateway."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image
from support.callers import SdkFormat, SdkSize
from support.config import KEYS, USER_SECRET
from support.fake_upstream import FakeUpstream
from support.pngs import make_png
from support.servers import GatewayProcess

# The SDK marks create_variation deprecated (dall-e-2 retired); keeping it working is the point.
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")]


@pytest.fixture
def sdk() -> Iterator[Callable[..., openai.OpenAI]]:
    """Clients changed in exactly two things, base_url and api_key; closed after the test."""
    clients: list[openai.OpenAI] = []

    def make(gateway: GatewayProcess, user: str = "alice", key: str | None = None) -> openai.OpenAI:
        clients.append(
            openai.OpenAI(base_url=gateway.url + "/v1", api_key=key or KEYS[user], max_retries=0)
        )
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.mark.parametrize("size", ["256x256", "512x512", "1024x1024"])
@pytest.mark.parametrize("response_format", ["url", "b64_json"])
@pytest.mark.parametrize("n", [1, 10])
def test_every_parameter_combination_is_forwarded(
    live: GatewayProcess,
    upstream: FakeUpstream,
    tmp_path: Path,
    size: SdkSize,
    response_format: SdkFormat,
    n: int,
    sdk: Callable[..., openai.OpenAI],
) -> None:
    """create_variation works for every allowed size, format and n, from a file on disk."""
    path = tmp_path / "in.png"
    path.write_bytes(make_png(48))
    with path.open("rb") as image:
        result = sdk(live).images.create_variation(
            image=image,
            model="dall-e-2",
            n=n,
            size=size,
            response_format=response_format,
            user="spoofed",
        )
    assert result.data is not None
    assert len(result.data) == n
    assert all((item.url if response_format == "url" else item.b64_json) for item in result.data)
    [seen] = upstream.received
    assert seen.fields["n"] == str(n) and seen.fields["size"] == size
    assert seen.fields["response_format"] == response_format
    assert (
        seen.fields["user"] == hmac.new(USER_SECRET.encode(), b"alice", hashlib.sha256).hexdigest()
    )


def test_sdk_raw_bytes_upload_without_filename(
    live: GatewayProcess, upstream: FakeUpstream, sdk: Callable[..., openai.OpenAI]
) -> None:
    """Passing bytes (no file name) works the same."""
    result = sdk(live, "bob").images.create_variation(image=make_png(16))
    assert result.data is not None
    assert len(result.data) == 1
    assert upstream.received[0].files["image"][2] == make_png(16)


def test_sdk_sees_typed_errors(
    live: GatewayProcess, upstream: FakeUpstream, sdk: Callable[..., openai.OpenAI]
) -> None:
    """Gateway refusals surface as the SDK's own exception classes, with OpenAI's codes."""
    with pytest.raises(openai.AuthenticationError):
        sdk(live, key="gwk_nope").images.create_variation(image=make_png(16))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(live).images.create_variation(image=make_png(16), n=11)
    assert caught.value.code == "integer_above_max_value" and caught.value.param == "n"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(live).images.create_variation(image=make_png(16, height=8))
    assert caught.value.code == "invalid_image_dimensions"
    assert upstream.received == []


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_sandbox_returns_real_distinct_variations_at_the_size_asked(
    live_sandbox: GatewayProcess, response_format: SdkFormat, sdk: Callable[..., openai.OpenAI]
) -> None:
    """The sandbox answers real PNGs of the requested size, different per index."""
    response = sdk(live_sandbox).images.with_raw_response.create_variation(
        image=make_png(64), n=3, size="256x256", response_format=response_format
    )
    assert response.headers["x-gateway-upstream"] == "sandbox"
    images = []
    data = response.parse().data
    assert data is not None
    for item in data:
        if response_format == "url":
            assert item.url is not None and "se=" in item.url
            fetched = httpx.get(item.url)  # a capability URL: no key needed
            assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
            images.append(fetched.content)
        else:
            assert item.b64_json is not None
            images.append(base64.b64decode(item.b64_json))
    decoded = [Image.open(io.BytesIO(png)) for png in images]
    assert all(img.format == "PNG" and img.size == (256, 256) for img in decoded)
    assert len({img.tobytes() for img in decoded}) == 3


def test_sandbox_urls_are_unguessable_and_expire_unknown(live_sandbox: GatewayProcess) -> None:
    """A file URL with a token nobody was given answers 404 in the OpenAI shape."""
    response = httpx.get(live_sandbox.url + "/files/" + "A" * 43 + ".png")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
