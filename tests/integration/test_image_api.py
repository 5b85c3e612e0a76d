"""Generations and edits through the app: the upstream call built from the validated
options, the pseudonym in place of the caller's identity fields, the estimate reserved and
the `usage` settled (both shapes), refunds by SPEC 6.2, one quota across the three
endpoints, and the cache rules (edits by their inputs, generations only on opt-in)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.clock import MID_WINDOW
from support.config import EDITS_MODEL, EDITS_PRICE, USER_SECRET, auth, edits_upstream
from support.fake_upstream import FakeUpstream, Reply, image_api_response
from support.fixtures import AppFactory
from support.pngs import make_png
from support.requests import assert_openai_error, post_variation

from gateway.quota.books import to_csv
from gateway.quota.calendar import Calendar

GENERATIONS, EDITS = "/v1/images/generations", "/v1/images/edits"
PSEUDONYM = hmac.new(USER_SECRET.encode(), b"alice", hashlib.sha256).hexdigest()
USD_RULE = {"teams": {"vision": [{"unit": "usd", "limit": 10.0, "window": "month"}]}}
# EDITS_PRICE: one 1024x1024 image reserves 250/1000/5000 output tokens (low/medium/high)
# at 40 USD per 1M, so 0.01/0.04/0.2 USD; input images 10 USD per 1M tokens.
INPUT_TOKENS = 2000  # ModelCapabilities.input_image_tokens' default


@pytest.fixture
def images(make_client: AppFactory, upstream: FakeUpstream) -> Callable[..., TestClient]:
    """A gateway with the image models configured (a usd team pool), against a fake
    upstream answering as gpt-image does."""
    upstream.script = lambda r: Reply(body=image_api_response(r))

    def make(**overrides: Any) -> TestClient:
        config = {
            "upstream": edits_upstream(upstream.url),
            "quotas": USD_RULE,
            "cache": {"enabled": False},
            **overrides,
        }
        return make_client(config)

    return make


def generate(client: TestClient, as_user: str = "alice", **body: Any) -> Any:
    return client.post(GENERATIONS, json={"prompt": "a red fox", **body}, headers=auth(as_user))


def edit(
    client: TestClient,
    images: list[bytes] | None = None,
    mask: bytes | None = None,
    field: str = "image[]",
    headers: dict[str, str] | None = None,
    **fields: str,
) -> Any:
    files = [(field, (f"in{i}.png", data, "image/png")) for i, data in enumerate(images or [])]
    if mask is not None:
        files.append(("mask", ("mask.png", mask, "image/png")))
    data = {"prompt": "add a hat", **fields}
    return client.post(EDITS, data=data, files=files, headers={**auth(), **(headers or {})})


def used(client: TestClient) -> dict[str, float]:
    body = client.get("/v1/quota", headers=auth("alice")).json()
    return {r["unit"]: r["used"] for r in body["rules"]}


def test_a_generation_goes_upstream_as_json_with_the_pseudonym(
    images: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """POST {base}/images/generations with the validated options and defaults, the model,
    and the pseudonym as `safety_identifier`; the caller's `user` and `safety_identifier`
    stay behind; the model's answer is relayed as it came."""
    client = images()
    response = generate(
        client, n=2, size="1024x1536", quality="low", user="mallory", safety_identifier="x"
    )
    assert response.status_code == 200, response.text
    (call,) = upstream.received
    assert call.path == "/v1/images/generations"
    assert call.json == {
        "model": EDITS_MODEL,
        "prompt": "a red fox",
        "n": 2,
        "size": "1024x1536",
        "quality": "low",
        "output_format": "png",
        "background": "auto",
        "moderation": "auto",
        "safety_identifier": PSEUDONYM,
    }
    body = response.json()
    assert len(body["data"]) == 2 and body["usage"]["output_tokens"] == 2000
    assert response.headers["x-gateway-cache"] == "BYPASS"


def test_an_edit_sends_every_image_in_order_and_the_mask(
    images: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """Several `image[]` parts and a mask reach the upstream's /images/edits in order, with
    their own types, the options as fields and the pseudonym."""
    client = images()
    pngs = [make_png(16), make_png(32), make_png(48)]
    mask = make_png(16, noise=True, alpha=True)
    response = edit(client, pngs, mask=mask, n="1", user="mallory")
    assert response.status_code == 200, response.text
    (call,) = upstream.received
    assert call.path == "/v1/images/edits"
    assert [(name, data) for name, _, _, data in call.parts] == [
        ("image[]", pngs[0]), ("image[]", pngs[1]), ("image[]", pngs[2]),
        ("mask", mask),
    ]  # fmt: skip
    assert call.fields["safety_identifier"] == PSEUDONYM
    assert "user" not in call.fields and call.fields["prompt"] == "add a hat"
    assert "moderation" not in call.fields


@pytest.mark.parametrize("details", [True, False])
def test_the_charge_is_settled_to_the_usage_in_either_shape(
    images: Callable[..., TestClient], upstream: FakeUpstream, details: bool
) -> None:
    """A generation reserves n x the size-and-quality estimate and settles to its `usage`:
    with the details blocks each count at its rate, without them the input at the text
    rate (a generation's input is its prompt)."""
    upstream.script = lambda r: Reply(body=image_api_response(r, details=details))
    client = images()
    assert generate(client, n=3, quality="high").status_code == 200
    # usage: 40 text input tokens (5 USD/1M), 3000 image output tokens (40 USD/1M)
    assert used(client)["usd"] == pytest.approx((40 * 5 + 3000 * 40) / 1e6)


def test_an_edit_settles_its_image_input_tokens_at_the_image_rate(
    images: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """Without details, an edit's input tokens are priced at the image input rate."""
    upstream.script = lambda r: Reply(body=image_api_response(r, details=False))
    client = images()
    assert edit(client, [make_png(16), make_png(32)]).status_code == 200
    # 40 + 600 input tokens at 10 USD/1M, 1000 output at 40 USD/1M
    assert used(client)["usd"] == pytest.approx((640 * 10 + 1000 * 40) / 1e6)


def test_the_reservation_is_the_documented_estimate(
    images: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """While the call is out, the usd used is n x the output estimate of the size and
    quality, plus the edit's input images at `input_image_tokens` each (docs/models.md)."""
    seen: list[dict[str, float]] = []
    client = images()

    def script(received: Any) -> Reply:
        seen.append(used(client))
        return Reply(body=image_api_response(received))

    upstream.script = script
    assert generate(client, n=2, size="1024x1024", quality="medium").status_code == 200
    assert edit(client, [make_png(16)] * 2, quality="low").status_code == 200
    assert seen[0]["usd"] == pytest.approx(2 * 0.04)
    first_settled = (40 * 5 + 2000 * 40) / 1e6
    edit_estimate = 0.01 + 2 * INPUT_TOKENS * 10 / 1e6
    assert seen[1]["usd"] == pytest.approx(first_settled + edit_estimate)


def test_an_upstream_refusal_keeps_only_the_request_unit(
    images: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """The upstream's 400 (a moderation refusal) is relayed with its code and param, and
    only the request is charged: images and usd are given back."""
    error = {"message": "Blocked.", "type": "invalid_request_error", "param": "prompt"}
    upstream.reply(Reply(status=400, body={"error": {**error, "code": "moderation_blocked"}}))
    client = images(
        quotas={
            **USD_RULE,
            "default": [
                {"unit": "images", "limit": 10, "window": "day"},
                {"unit": "requests", "limit": 10, "window": "day"},
            ],
        }
    )
    assert_openai_error(generate(client, n=4), 400, "moderation_blocked", "prompt")
    assert used(client) == {"usd": 0.0, "images": 0.0, "requests": 1.0}


def test_one_quota_across_the_three_endpoints(
    images: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """A requests rule is spent by variations, generations and edits alike: the fourth
    call, whichever endpoint, is refused and nothing more goes upstream."""
    client = images(quotas={"default": [{"unit": "requests", "limit": 3, "window": "day"}]})
    assert post_variation(client).status_code == 200
    assert generate(client).status_code == 200
    assert edit(client, [make_png(16)]).status_code == 200
    for refused in (generate(client), edit(client, [make_png(16)]), post_variation(client)):
        assert_openai_error(refused, 429, "insufficient_quota", None, "insufficient_quota")
    assert len(upstream.received) == 3


def test_identical_edits_are_cached_and_generations_only_on_opt_in(
    images: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """An edit repeated is a hit (same images, mask, prompt and options); a different image
    is a miss. A generation repeated goes upstream again unless the request opts in."""
    client = images(cache={"enabled": True})
    pngs = [make_png(16), make_png(32)]
    assert edit(client, pngs).headers["x-gateway-cache"] == "MISS"
    assert edit(client, pngs).headers["x-gateway-cache"] == "HIT"
    assert edit(client, pngs[::-1]).headers["x-gateway-cache"] == "MISS"
    assert edit(client, pngs, prompt="add a scarf").headers["x-gateway-cache"] == "MISS"
    for _ in range(2):
        assert generate(client).headers["x-gateway-cache"] == "BYPASS"
    opt_in = {"x-gateway-cache-generations": "true", **auth()}
    results = [
        client.post(GENERATIONS, json={"prompt": "a fox"}, headers=opt_in).headers[
            "x-gateway-cache"
        ]
        for _ in range(2)
    ]
    assert results == ["MISS", "HIT"]
    assert len(upstream.received) == 3 + 2 + 1


def test_a_team_may_cache_generations_and_be_limited_to_models(
    images: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """`images.teams.<team>`: vision caches its generations without opting in, and may only
    name the models listed for it; another team is not limited."""
    second = "gpt-image-other"
    upstream_section = edits_upstream(
        upstream.url, model=None, models=[EDITS_MODEL, second],
        prices={EDITS_MODEL: EDITS_PRICE, second: EDITS_PRICE},
    )  # fmt: skip
    client = images(
        upstream=upstream_section,
        cache={"enabled": True},
        images={"teams": {"vision": {"models": [second], "cache_generations": True}}},
    )
    assert [generate(client).headers["x-gateway-cache"] for _ in range(2)] == ["MISS", "HIT"]
    assert upstream.received[0].json is not None
    assert upstream.received[0].json["model"] == second  # the team's first model
    assert_openai_error(generate(client, model=EDITS_MODEL), 400, "invalid_value", "model")
    assert generate(client, "carol", model=EDITS_MODEL).headers["x-gateway-cache"] == "BYPASS"


def test_the_books_split_by_endpoint_and_model(
    images: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """One set of books for the three endpoints: each owner's totals, and its amounts by
    endpoint and model (the model asked), which add up to them; the CSV export's `split`
    writes a line per endpoint and model."""
    client = images()
    assert post_variation(client).status_code == 200
    assert generate(client, n=2).status_code == 200
    assert edit(client, [make_png(16)]).status_code == 200
    stamp = Calendar().span("month", MID_WINDOW).stamp
    month = f"{stamp[:4]}-{stamp[4:]}"
    answer = client.get(f"/admin/usage?month={month}&by=team", headers=auth("grafana")).json()
    (row,) = answer["data"]
    parts = {(p["endpoint"], p["model"]): p for p in row["endpoints"]}
    assert set(parts) == {
        ("variations", "dall-e-2"), ("generations", EDITS_MODEL), ("edits", EDITS_MODEL)
    }  # fmt: skip
    assert parts[("generations", EDITS_MODEL)]["images"] == 2
    for unit in ("requests", "images", "usd"):
        assert sum(p[unit] for p in parts.values()) == pytest.approx(row[unit])
    lines = to_csv(answer["data"], "team", split=True).splitlines()
    assert lines[0] == "team,endpoint,model,requests,images,usd,cache_hits"
    assert sorted(line.split(",")[1] for line in lines[1:]) == [
        "edits",
        "generations",
        "variations",
    ]


def test_an_upstream_failure_gives_back_images_and_usd(
    images: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """The upstream's 5xx: 502 upstream_error, the request unit kept, images and usd back."""
    upstream.reply(Reply(status=500, body={"error": {"message": "boom"}}))
    client = images(
        quotas={**USD_RULE, "default": [{"unit": "images", "limit": 10, "window": "day"}]}
    )
    assert_openai_error(
        edit(client, [make_png(16)], n="3"), 502, "upstream_error", None, "server_error"
    )
    assert used(client) == {"usd": 0.0, "images": 0.0}


def test_a_model_gone_upstream_hands_the_same_call_to_the_next(
    images: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """With no model named, a refusal of the first model as gone sends the same generation
    to the next of the list, charged for what that one made; naming the gone model after
    that is refused before anything is spent."""
    second = "gpt-image-next"
    section = edits_upstream(
        upstream.url, model=None, models=[EDITS_MODEL, second],
        prices={EDITS_MODEL: EDITS_PRICE, second: EDITS_PRICE},
    )  # fmt: skip
    gone = {
        "error": {"message": "gone", "type": "invalid_request_error", "code": "model_not_found"}
    }

    def script(received: Any) -> Reply:
        if received.json is not None and received.json["model"] == EDITS_MODEL:
            return Reply(status=404, body=gone)
        return Reply(body=image_api_response(received))

    upstream.script = script
    client = images(upstream=section)
    assert generate(client).status_code == 200
    assert [call.json["model"] for call in upstream.received if call.json] == [EDITS_MODEL, second]
    assert_openai_error(generate(client, model=EDITS_MODEL), 400, "invalid_value", "model")
    assert used(client)["usd"] == pytest.approx((40 * 5 + 1000 * 40) / 1e6)
