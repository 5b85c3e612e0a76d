"""dall-e-2 retired: the official openai SDK's create_variation against a live gateway that
fulfils it with a current image model through the edits endpoint (a fake one on loopback)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import httpx
import openai
import pytest
from PIL import Image
from support.callers import SdkFormat, SdkSize
from support.config import EDITS_MODEL, KEYS, auth, base_config, edits_upstream, merged
from support.fake_upstream import FakeUpstream, Reply, edits_response
from support.pngs import make_png
from support.servers import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")]


@pytest.fixture
def live_edits(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> GatewayProcess:
    upstream.script = lambda r: Reply(body=edits_response(r))
    config = merged(
        base_config(upstream.url),
        {
            "upstream": edits_upstream(upstream.url),
            "quotas": {"teams": {"vision": [{"unit": "usd", "limit": 5.0, "window": "month"}]}},
        },
    )
    return start_gateway(config, {"REDIS_URL": clean_redis})


def _png(data: bytes) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        return image.format, image.size


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_create_variation_gets_pngs_of_every_asked_size(
    live_edits: GatewayProcess, upstream: FakeUpstream, response_format: SdkFormat
) -> None:
    """The caller changed nothing but base_url and api_key, and gets dall-e-2's answer."""
    with openai.OpenAI(
        base_url=live_edits.url + "/v1", api_key=KEYS["alice"], max_retries=0
    ) as sdk:
        sizes: tuple[SdkSize, ...] = ("256x256", "512x512", "1024x1024")
        for size in sizes:
            raw = sdk.images.with_raw_response.create_variation(
                image=make_png(64), n=2, size=size, response_format=response_format
            )
            assert raw.headers["x-gateway-upstream-model"] == EDITS_MODEL
            side = int(size.partition("x")[0])
            images = raw.parse().data
            assert images is not None
            for item in images:
                if response_format == "url":
                    assert item.url is not None
                    fetched = httpx.get(item.url)  # a capability URL: no key
                    assert fetched.status_code == 200
                    data = fetched.content
                else:
                    assert item.b64_json is not None
                    data = base64.b64decode(item.b64_json)
                assert _png(data) == ("PNG", (side, side))
    assert [call.path for call in upstream.received] == ["/v1/images/edits"] * 3
    assert {call.fields["size"] for call in upstream.received} == {"1024x1024"}
    usd = httpx.get(live_edits.url + "/v1/quota", headers=auth("alice")).json()["rules"][0]
    per_call = (50 * 0.005 + 388 * 0.01 + 2 * 1056 * 0.04) / 1000  # support.config prices
    assert usd["used"] == pytest.approx(3 * per_call, abs=1e-6)


def test_a_policy_refusal_is_a_bad_request_for_the_sdk(
    live_edits: GatewayProcess, upstream: FakeUpstream
) -> None:
    refusal = {
        "message": "Your request was rejected by the safety system.",
        "type": "image_generation_user_error",
        "param": None,
        "code": "moderation_blocked",
    }
    upstream.reply(Reply(status=400, body={"error": refusal}))
    sdk = openai.OpenAI(base_url=live_edits.url + "/v1", api_key=KEYS["bob"], max_retries=0)
    with sdk, pytest.raises(openai.BadRequestError) as caught:
        sdk.images.create_variation(image=make_png(32))
    assert caught.value.code == "moderation_blocked" and caught.value.param == "image"
    assert "content policy" in caught.value.message
