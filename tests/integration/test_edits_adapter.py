"""The edits adapter through the app: the translated call, the variations-shaped answer,
usage-based settlement and the failure rows, against a fake edits upstream on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image
from starlette.testclient import TestClient
from support.config import (
    EDITS_IMAGE_PRICE,
    EDITS_MODEL,
    EDITS_PRICE,
    UPSTREAM_KEY,
    USER_SECRET,
    auth,
    edits_upstream,
)
from support.fake_upstream import (
    FakeUpstream,
    Received,
    Reply,
    edits_response,
    edits_usage,
    generated_png,
)
from support.fixtures import AppFactory
from support.requests import DEFAULT_PNG, assert_openai_error, post_variation

from gateway.settings.models import VARIATION_PROMPT

USD_RULE = {"teams": {"vision": [{"unit": "usd", "limit": 10.0, "window": "month"}]}}
IMAGES_RULE = {"default": [{"unit": "images", "limit": 100, "window": "day"}]}


@pytest.fixture
def edits(make_client: AppFactory, upstream: FakeUpstream) -> Callable[..., TestClient]:
    """A gateway in edits mode (quotas: a team usd pool and a user images rule)."""
    upstream.script = lambda r: Reply(body=edits_response(r))

    def make(
        cache: dict[str, Any] | None = None, env: dict[str, str] | None = None, **settings: Any
    ) -> TestClient:
        overrides = {
            "upstream": edits_upstream(upstream.url, **settings),
            "quotas": {**USD_RULE, **IMAGES_RULE},
            "cache": cache or {"enabled": False},
        }
        return make_client(overrides, env)

    return make


def used(client: TestClient) -> dict[str, float]:
    body = client.get("/v1/quota", headers=auth("alice")).json()
    return {r["unit"]: r["used"] for r in body["rules"]}


def png_side(data: bytes) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        return image.format, image.size


def test_the_upstream_call_is_an_edit_built_from_the_gateway_settings(
    edits: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """POST {base}/images/edits with the model, prompt, quality and the pseudonym as
    `safety_identifier` (no `user`, no `response_format`); the caller's model, size, format
    and user stay behind."""
    client = edits(quality="high", input_fidelity="high")
    fields = {"n": "3", "size": "256x256", "response_format": "b64_json", "user": "mallory"}
    assert post_variation(client, fields=fields).status_code == 200
    (call,) = upstream.received
    assert call.path == "/v1/images/edits"
    assert call.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    pseudonym = hmac.new(USER_SECRET.encode(), b"alice", hashlib.sha256).hexdigest()
    assert call.fields == {
        "model": EDITS_MODEL,
        "prompt": VARIATION_PROMPT,
        "n": "3",
        "size": "1024x1024",
        "quality": "high",
        "input_fidelity": "high",
        "output_format": "png",
        "safety_identifier": pseudonym,
    }
    filename, content_type, image = call.files["image"]
    assert (filename, content_type, image) == ("image.png", "image/png", DEFAULT_PNG)


def test_a_custom_prompt_is_sent_and_input_fidelity_left_to_the_model(
    edits: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    client = edits(prompt="Same cat, different day.")
    assert post_variation(client).status_code == 200
    assert upstream.received[0].fields["prompt"] == "Same cat, different day."
    assert "input_fidelity" not in upstream.received[0].fields


@pytest.mark.parametrize("size", ["256x256", "512x512", "1024x1024"])
def test_b64_answers_are_pngs_of_the_asked_size(
    edits: Callable[..., TestClient], size: str
) -> None:
    """The caller gets dall-e-2's shape: created and data[].b64_json, each PNG resized."""
    response = post_variation(
        edits(), fields={"n": "2", "size": size, "response_format": "b64_json"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-upstream-model"] == EDITS_MODEL
    body = response.json()
    assert set(body) == {"created", "data"}
    assert body["created"] == 1700000000
    assert len(body["data"]) == 2
    side = int(size.partition("x")[0])
    for item in body["data"]:
        assert set(item) == {"b64_json"}
        assert png_side(base64.b64decode(item["b64_json"])) == ("PNG", (side, side))
    if side == 1024:  # already the asked PNG: relayed byte for byte
        assert base64.b64decode(body["data"][0]["b64_json"]) == generated_png()


def test_url_answers_are_capability_urls_the_gateway_serves(
    edits: Callable[..., TestClient],
) -> None:
    """url answers point at the gateway's own /files/, valid 60 minutes, without a key."""
    client = edits()
    response = post_variation(client, fields={"n": "2", "size": "512x512"})
    assert response.status_code == 200, response.text
    urls = [item["url"] for item in response.json()["data"]]
    assert len(set(urls)) == 2
    for url in urls:
        parts = urlsplit(url)
        assert parts.path.startswith("/files/") and parts.query.startswith("se=")
        fetched = client.get(f"{parts.path}?{parts.query}")  # no Authorization header
        assert fetched.status_code == 200
        assert fetched.headers["content-type"] == "image/png"
        assert png_side(fetched.content) == ("PNG", (512, 512))


def test_usd_settles_to_the_cost_the_usage_reports(
    edits: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """Reserved at the per-image price (0.04 medium), settled to the usage's cost: a top-up."""
    client = edits()
    response = post_variation(client, fields={"n": "2"})
    assert response.status_code == 200
    # 50 text tokens at 0.005/1K, 388 image tokens at 0.01/1K, 2 x 1056 output at 0.04/1K
    expected = (50 * 0.005 + 388 * 0.01 + 2112 * 0.04) / 1000
    assert used(client)["usd"] == pytest.approx(expected, abs=1e-6)
    assert expected > 2 * 0.04
    # The answer's headers show the settled state, not the reservation.
    assert float(response.headers["x-ratelimit-remaining-usd"]) == pytest.approx(10 - expected)
    assert used(client)["images"] == 2


def test_a_cheaper_call_than_reserved_is_refunded_the_difference(
    edits: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    client = edits(quality="high")  # reserves 0.2 per image
    response = post_variation(client, fields={"n": "1"})
    assert response.status_code == 200
    expected = (50 * 0.005 + 388 * 0.01 + 1056 * 0.04) / 1000
    assert used(client)["usd"] == pytest.approx(expected, abs=1e-6)


def test_without_usage_the_reservation_stands(
    edits: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    def no_usage(received: Received) -> Reply:
        body = edits_response(received)
        del body["usage"]
        return Reply(body=body)

    client = edits()
    upstream.script = no_usage
    assert post_variation(client, fields={"n": "2"}).status_code == 200
    assert used(client)["usd"] == pytest.approx(0.08)


def test_fewer_images_than_asked_refunds_the_missing_ones(
    edits: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    def short(received: Received) -> Reply:
        body = edits_response(received)
        body["data"] = body["data"][:1]
        body["usage"] = edits_usage(1)
        return Reply(body=body)

    client = edits()
    upstream.script = short
    response = post_variation(client, fields={"n": "3", "response_format": "b64_json"})
    assert response.status_code == 200
    assert len(response.json()["data"]) == 1
    assert used(client)["images"] == 1
    assert used(client)["usd"] == pytest.approx((50 * 0.005 + 388 * 0.01 + 1056 * 0.04) / 1000)


@pytest.mark.redis
def test_answers_are_cached_per_model(
    edits: Callable[..., TestClient], upstream: FakeUpstream, clean_redis: str
) -> None:
    """A repeat is a HIT that still names its model; another model is a miss."""
    shared = {"cache": {"enabled": True}, "env": {"REDIS_URL": clean_redis}}
    first = edits(**shared)
    fields = {"response_format": "b64_json"}
    assert post_variation(first, fields=fields).headers["x-gateway-cache"] == "MISS"
    hit = post_variation(first, fields=fields)
    assert hit.headers["x-gateway-cache"] == "HIT"
    assert hit.headers["x-gateway-upstream-model"] == EDITS_MODEL
    other = edits(**shared, model="gpt-image-other", prices={"gpt-image-other": EDITS_PRICE})
    miss = post_variation(other, fields=fields)
    assert miss.headers["x-gateway-cache"] == "MISS"
    assert miss.headers["x-gateway-upstream-model"] == "gpt-image-other"
    assert [call.fields["model"] for call in upstream.received] == [EDITS_MODEL, "gpt-image-other"]


def _error(
    code: str | None, param: str | None = None, type_: str = "invalid_request_error"
) -> dict[str, dict[str, str | None]]:
    message = "Bad thing. Your key sk-live-abcdefghijklmnop was used."
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


FAILURES = [
    # (upstream status, body, caller status, code, param, type)
    (
        400,
        _error("moderation_blocked", None, "image_generation_user_error"),
        400,
        "moderation_blocked",
        "image",
        "invalid_request_error",
    ),
    (
        404,
        _error("model_not_found", "model"),
        503,
        "upstream_model_unavailable",
        None,
        "server_error",
    ),
    (
        400,
        _error("model_not_found", "model"),
        503,
        "upstream_model_unavailable",
        None,
        "server_error",
    ),
    (404, b"<html>Not Found</html>", 502, "upstream_misconfigured", None, "server_error"),
    (400, _error("invalid_value", "quality"), 502, "upstream_misconfigured", None, "server_error"),
    (
        400,
        _error("invalid_image", "image[]"),
        400,
        "invalid_image",
        "image",
        "invalid_request_error",
    ),
    (
        429,
        _error("rate_limit_exceeded", None, "requests"),
        429,
        "rate_limit_exceeded",
        None,
        "requests",
    ),
    (500, _error(None, None, "server_error"), 502, "upstream_error", None, "server_error"),
    (503, b"<html>Service Unavailable</html>", 502, "upstream_error", None, "server_error"),
    (
        200,
        {"created": 1, "data": [{"b64_json": "not base64!"}]},
        502,
        "upstream_error",
        None,
        "server_error",
    ),
    (
        200,
        {"created": 1, "data": [{"b64_json": "aGVsbG8="}]},
        502,
        "upstream_error",
        None,
        "server_error",
    ),
    (
        200,
        {"created": 1, "data": [{"url": "https://x.invalid/a.png"}]},
        502,
        "upstream_error",
        None,
        "server_error",
    ),
]


@pytest.mark.parametrize(("status", "body", "caller", "code", "param", "type_"), FAILURES)
def test_edits_failures_map_to_the_error_table_and_settle_to_what_the_model_did(
    edits: Callable[..., TestClient],
    upstream: FakeUpstream,
    status: int,
    body: dict[str, dict[str, str | None]] | bytes,
    caller: int,
    code: str,
    param: str | None,
    type_: str,
) -> None:
    """Each failure gets its error-table answer; a refusal (an error status) gives back
    images and usd, a 200 the gateway could not use keeps them (the model worked, and
    billed: `upstream.on_timeout: keep_charge`)."""
    client = edits()
    upstream.reply(Reply(status=status, body=body))
    response = post_variation(client, fields={"n": "2"})
    error = assert_openai_error(response, caller, code, param, type_=type_)
    assert "sk-live" not in response.text
    reserved = {"usd": pytest.approx(2 * EDITS_IMAGE_PRICE["medium"]), "images": 2}
    assert used(client) == (reserved if status == 200 else {"usd": 0, "images": 0})
    if caller in (502, 503) and code != "upstream_error":
        assert response.headers["x-should-retry"] == "false"
    if code == "moderation_blocked":
        assert "content policy" in error["message"]


def test_the_sandbox_plays_the_edits_endpoint_offline(make_client: AppFactory) -> None:
    """`base_url: sandbox` with `adapter: edits`: real variations and a usage-based cost."""
    client = make_client(
        {
            "upstream": edits_upstream("sandbox", quality="low"),
            "quotas": USD_RULE,
        }
    )
    response = post_variation(client, fields={"n": "2", "size": "256x256"})
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-upstream"] == "sandbox"
    assert response.headers["x-gateway-upstream-model"] == EDITS_MODEL
    images = [client.get(urlsplit(item["url"]).path).content for item in response.json()["data"]]
    assert [png_side(image) for image in images] == [("PNG", (256, 256))] * 2
    assert images[0] != images[1]
    text_tokens = len(VARIATION_PROMPT) // 4
    expected = (text_tokens * 5 + 388 * 10 + 2 * 196 * 40) / 1e6  # gpt-image-2's low tokens
    assert used(client)["usd"] == pytest.approx(expected, abs=1e-6)


def test_the_default_config_answers_through_the_edits_path_with_gpt_image_2() -> None:
    """config/gateway.yaml (what `make run` serves) needs no secret and answers variations
    through the edits adapter with gpt-image-2 (the sandbox playing it), offline, at hosted
    URLs, settled at gpt-image-2's prices from the usage the model reports."""
    from pathlib import Path

    import yaml
    from support.clock import WindowSafeClock
    from support.config import principals

    from gateway.app import create_app
    from gateway.settings.build import build_settings
    from gateway.settings.config import parse_config

    path = Path(__file__).resolve().parents[2] / "config" / "gateway.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    settings = build_settings(parse_config({**raw, "principals": principals()}), {})
    app = create_app(settings, store_clock=WindowSafeClock())
    with TestClient(app, base_url="http://gateway.test") as client:
        response = post_variation(client, fields={"n": "2", "size": "512x512"})
        assert response.status_code == 200, response.text
        assert response.headers["x-gateway-upstream"] == "sandbox"
        assert response.headers["x-gateway-upstream-model"] == "gpt-image-2"
        urls = [item["url"] for item in response.json()["data"]]
        images = [client.get(urlsplit(url).path).content for url in urls]
        usd = used(client)["usd"]
    assert [png_side(image) for image in images] == [("PNG", (512, 512))] * 2
    # medium: 2 x 1767 output tokens at 30 USD, the prompt at 5 and the image at 8 per 1M
    text_tokens = len(VARIATION_PROMPT) // 4
    assert usd == pytest.approx((text_tokens * 5 + 388 * 8 + 2 * 1767 * 30) / 1e6, abs=1e-6)
