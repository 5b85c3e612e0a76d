"""Streamed generations and edits through the app: the upstream's events relayed as they
are, the request sent upstream with the pseudonym and the stream's fields, the charge
settled from what the stream delivered (SPEC 6.2), and streamed answers never cached."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.clock import MID_WINDOW
from support.config import EDITS_MODEL, EDITS_PRICE, auth, edits_upstream
from support.fake_streams import StreamScript
from support.fake_upstream import FakeUpstream, Reply
from support.fixtures import AppFactory
from support.pngs import make_png

from gateway.quota.calendar import Calendar
from gateway.upstream.sse import Decoder

GENERATIONS, EDITS = "/v1/images/generations", "/v1/images/edits"
USD_RULE = {"teams": {"vision": [{"unit": "usd", "limit": 10.0, "window": "month"}]}}
RATES = ("text_input_per_1m_tokens", "image_input_per_1m_tokens", "image_output_per_1m_tokens")
TEXT_RATE, IMAGE_RATE, OUTPUT_RATE = (EDITS_PRICE[rate] / 1e6 for rate in RATES)


@pytest.fixture
def gateway(make_client: AppFactory, upstream: FakeUpstream) -> Callable[..., TestClient]:
    """A gateway with the image models and a usd team pool, against the fake upstream."""

    def make(**overrides: Any) -> TestClient:
        config = {"upstream": edits_upstream(upstream.url), "quotas": USD_RULE, **overrides}
        return make_client(config)

    return make


def used(client: TestClient) -> dict[str, float]:
    body = client.get("/v1/quota", headers=auth("alice")).json()
    return {r["unit"]: r["used"] for r in body["rules"]}


def stream_generation(client: TestClient, **body: Any) -> tuple[Any, bytes]:
    """POST a streamed generation; its answer and the whole body."""
    ask = {"prompt": "a red fox", "stream": True, "partial_images": 2, **body}
    with client.stream("POST", GENERATIONS, json=ask, headers=auth()) as response:
        return response, response.read()


def test_a_streamed_generation_is_relayed_as_the_upstream_sent_it(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """The caller gets the upstream's events byte for byte, as an event stream; the upstream
    was asked `stream` and `partial_images`, with the pseudonym and nothing of the caller's
    identity; the charge is the completed event's usage."""
    script = StreamScript(partials=2)
    upstream.script = script.reply
    client = gateway()
    response, body = stream_generation(client, user="alice@corp", safety_identifier="me")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-gateway-cache"] == "BYPASS"
    assert body == b"".join(script.events())
    (call,) = upstream.received
    assert response.headers["x-upstream-request-id"] == call.request_id
    assert call.json is not None
    assert (call.json["stream"], call.json["partial_images"]) == (True, 2)
    assert call.json["safety_identifier"] not in ("me", "alice@corp", "alice")
    assert "user" not in call.json
    cost = 12 * TEXT_RATE + script.billed_output() * OUTPUT_RATE
    assert used(client)["usd"] == pytest.approx(cost, abs=1e-6)


def test_a_streamed_edit_is_never_cached(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """Two identical streamed edits, the cache on: both go upstream (an edit is otherwise
    cached by its inputs), both BYPASS; each is charged what its stream delivered."""
    script = StreamScript(kind="image_edit", partials=1, image_tokens=300)
    upstream.script = script.reply
    client = gateway(cache={"enabled": True})
    answers = []
    for _ in range(2):
        data = {"prompt": "add a hat", "stream": "true", "partial_images": "1"}
        files = [("image", ("in.png", make_png(32), "image/png"))]
        with client.stream("POST", EDITS, data=data, files=files, headers=auth()) as response:
            answers.append((response.headers["x-gateway-cache"], response.read()))
    assert [cache for cache, _ in answers] == ["BYPASS", "BYPASS"]
    assert len(upstream.received) == 2
    assert upstream.received[0].fields["stream"] == "true"
    events = Decoder().feed(answers[0][1])
    assert [e.name for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    one = 12 * TEXT_RATE + 300 * IMAGE_RATE + script.billed_output() * OUTPUT_RATE
    assert used(client)["usd"] == pytest.approx(2 * one, abs=1e-6)


def test_a_stream_cut_after_one_of_two_images_is_settled_for_what_came(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """n=2, the upstream resets the connection after the first image and the second's
    partial image: the caller's stream ends with an error event; one image is charged
    (its usage) and the partial image after it at 100 output tokens; the other image is
    given back."""
    script = StreamScript(partials=1, images=2, cut_after=3)
    upstream.script = script.reply
    client = gateway(
        quotas={**USD_RULE, "default": [{"unit": "images", "limit": 50, "window": "day"}]}
    )
    _, body = stream_generation(client, n=2, partial_images=1)
    events = Decoder().feed(body)
    assert [e.name for e in events][-1] == "error"
    assert events[-1].json()["error"]["type"] == "server_error"
    cost = 12 * TEXT_RATE + (1767 + 100 + 100) * OUTPUT_RATE
    settled = used(client)
    assert settled["usd"] == pytest.approx(cost, abs=1e-6)
    assert settled["images"] == 1


def test_a_refusal_before_the_stream_is_an_error_and_refunds_the_images(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """The upstream answers 400 instead of a stream: the caller gets it in OpenAI's shape
    (JSON, not an event stream); usd is given back, the request unit kept."""
    refusal = {"error": {"message": "Your prompt was refused.", "type": "invalid_request_error",
                         "param": "prompt", "code": "moderation_blocked"}}  # fmt: skip
    upstream.reply(Reply(status=400, body=refusal))
    client = gateway(
        quotas={**USD_RULE, "default": [{"unit": "requests", "limit": 9, "window": "day"}]}
    )
    response, _ = stream_generation(client)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    settled = used(client)
    assert (settled["usd"], settled["requests"]) == (0, 1)


@pytest.mark.parametrize(
    ("body", "param"),
    [({"partial_images": 4}, "partial_images"), ({"stream": "yes"}, "stream")],
)
def test_bad_streaming_fields_are_refused_before_anything_is_spent(
    gateway: Callable[..., TestClient], upstream: FakeUpstream, body: dict[str, Any], param: str
) -> None:
    """partial_images over 3, a stream that is not a boolean: 400 naming it; nothing goes
    upstream, nothing is charged."""
    client = gateway()
    response, _ = stream_generation(client, **body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert upstream.received == [] and used(client)["usd"] == 0


def test_the_reservation_counts_the_partial_images(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """While the stream is held, the usd reserved is n images at the estimate plus 100
    output tokens per partial image; then it settles to the usage."""
    script = StreamScript(partials=3, hold_after=1)
    upstream.script = script.reply
    client = gateway()
    ask = {"prompt": "a red fox", "stream": True, "partial_images": 3, "quality": "low"}
    with client.stream("POST", GENERATIONS, json=ask, headers=auth()) as response:
        chunks = response.iter_bytes()
        next(chunks)  # the first partial image has come: the call is under way
        reserved = used(client)["usd"]
        script.gate.set()
        for _ in chunks:
            pass
    assert reserved == pytest.approx((250 + 3 * 100) * OUTPUT_RATE, abs=1e-6)
    assert used(client)["usd"] == pytest.approx(
        12 * TEXT_RATE + script.billed_output() * OUTPUT_RATE, abs=1e-6
    )


def test_streamed_usage_is_booked_by_endpoint_and_model(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """A streamed generation's settled cost lands in the books under its endpoint and
    model, as an answer's does."""
    script = StreamScript(partials=2)
    upstream.script = script.reply
    client = gateway()
    stream_generation(client)
    stamp = Calendar().span("month", MID_WINDOW).stamp
    answer = client.get(
        f"/admin/usage?month={stamp[:4]}-{stamp[4:]}&by=team", headers=auth("grafana")
    ).json()
    (row,) = answer["data"]
    (part,) = row["endpoints"]
    assert (part["endpoint"], part["model"], part["images"]) == ("generations", EDITS_MODEL, 1)
    cost = 12 * TEXT_RATE + script.billed_output() * OUTPUT_RATE
    assert part["usd"] == pytest.approx(cost, abs=1e-6) == row["usd"]


def test_a_stream_keeps_its_place_in_flight_until_it_ends(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """limits.max_concurrent_requests 1: while a stream is relayed, another request is
    refused 503 server_overloaded (the stream holds two sockets like any request); once it
    has ended, the next one is served."""
    script = StreamScript(partials=2, hold_after=1)
    upstream.script = script.reply
    client = gateway(limits={"max_concurrent_requests": 1})
    ask = {"prompt": "a red fox", "stream": True, "partial_images": 2}
    with client.stream("POST", GENERATIONS, json=ask, headers=auth()) as response:
        chunks = response.iter_bytes()
        next(chunks)
        refused = client.post(GENERATIONS, json={"prompt": "a cat"}, headers=auth())
        script.gate.set()
        for _ in chunks:
            pass
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "server_overloaded"
    upstream.script = StreamScript(partials=0).reply
    assert stream_generation(client, partial_images=0)[0].status_code == 200


def test_a_compressed_upstream_stream_reaches_the_caller_decoded(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """An upstream stream sent gzip-encoded: the caller gets the plain events (the
    gateway's answer names no content-encoding), and the usage in them is settled."""
    script = StreamScript(partials=1, gzip=True)
    upstream.script = script.reply
    client = gateway()
    response, body = stream_generation(client, partial_images=1)
    assert "content-encoding" not in response.headers
    assert body == b"".join(script.events())
    cost = 12 * TEXT_RATE + script.billed_output() * OUTPUT_RATE
    assert used(client)["usd"] == pytest.approx(cost, abs=1e-6)


def test_an_error_event_from_the_upstream_is_relayed_and_settled_for_what_came(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """The upstream sends two partial images, then an `error` event and ends: the caller
    gets the error event as sent; no image came, so the images are given back, the
    request unit kept, and the two partial images billed at 100 output tokens each."""
    script = StreamScript(partials=2, error_after=2)
    upstream.script = script.reply
    rules = [{"unit": u, "limit": 9, "window": "day"} for u in ("requests", "images")]
    client = gateway(quotas={**USD_RULE, "default": rules})
    _, body = stream_generation(client)
    assert body == b"".join(script.events())
    assert Decoder().feed(body)[-1].json()["error"]["code"] == "image_generation_failed"
    settled = used(client)
    assert (settled["requests"], settled["images"]) == (1, 0)
    assert settled["usd"] == pytest.approx(2 * 100 * OUTPUT_RATE, abs=1e-6)
