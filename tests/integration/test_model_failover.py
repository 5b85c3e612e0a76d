"""A model the upstream no longer has, through the app: the refused call is served by the
next model of the list and charged only for what that model made; with none left, 503
`upstream_model_unavailable`, refunded in full; the metric, the audit trail and the watch's
reading of /models say so."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.config import EDITS_PRICE, auth, edits_upstream
from support.fake_upstream import (
    FakeUpstream,
    Received,
    Reply,
    edits_response,
    model_entry,
    model_not_found,
)
from support.fixtures import AppFactory
from support.requests import assert_openai_error, post_variation

# b's images cost twice a's: a call served by b is charged at b's price.
DEAR = {**EDITS_PRICE, "image_output_per_1m_tokens": 80.0}
RULES = {
    "default": [
        {"unit": "requests", "limit": 100, "window": "day"},
        {"unit": "images", "limit": 100, "window": "day"},
        {"unit": "usd", "limit": 100.0, "window": "day"},
    ]
}


def two_models(url: str, first: str, second: str, **upstream: Any) -> dict[str, Any]:
    """An edits upstream at `url` listing `first` then `second` (the second dearer)."""
    section = edits_upstream(url, **upstream.pop("edits", {}))
    section["edits"] = {
        **{k: v for k, v in section["edits"].items() if k != "model"},
        "models": [first, second],
        "prices": {first: EDITS_PRICE, second: DEAR},
    }
    return {**section, **upstream}


@pytest.fixture
def gateway(make_client: AppFactory, upstream: FakeUpstream) -> Callable[..., TestClient]:
    """The app with the edits models `first`, `second` in front of the fake upstream."""
    upstream.script = lambda received: Reply(body=edits_response(received))

    def make(first: str, second: str, **upstream_settings: Any) -> TestClient:
        section = two_models(upstream.url, first, second, **upstream_settings)
        return make_client({"upstream": section, "quotas": RULES})

    return make


def retire(upstream: FakeUpstream, *gone: str) -> None:
    """The fake upstream refuses `gone` as OpenAI refuses a model it does not have."""

    def answer(received: Received) -> Reply:
        model = received.fields.get("model", "")
        if model in gone:
            return Reply(status=404, body=model_not_found(model))
        return Reply(body=edits_response(received))

    upstream.script = answer


def used(client: TestClient) -> dict[str, float]:
    rules = client.get("/v1/quota", headers=auth("alice")).json()["rules"]
    return {rule["unit"]: rule["used"] for rule in rules}


def metric(client: TestClient, name: str, model: str) -> float | None:
    """A series' value on /metrics, or None when absent."""
    text = client.get("/metrics").text
    found = re.search(rf'^{name}{{model="{re.escape(model)}"}} (\S+)$', text, re.M)
    return float(found[1]) if found else None


def test_the_refused_call_is_served_by_the_next_model_and_charged_for_it(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """The serving model retired mid-run: the call that meets the refusal goes on to the
    next model with the same image, the caller sees a plain 200, and pays one request, its
    images, and the next model's cost from its usage; later calls go there directly."""
    client = gateway("fo-a", "fo-b")
    assert post_variation(client, fields={"n": "2"}).status_code == 200
    retire(upstream, "fo-a")
    before = used(client)
    response = post_variation(client, fields={"n": "2", "response_format": "b64_json"})
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-upstream-model"] == "fo-b"
    assert len(response.json()["data"]) == 2
    refused, served = upstream.received[1:]
    assert (refused.fields["model"], served.fields["model"]) == ("fo-a", "fo-b")
    assert served.files["image"][2] == refused.files["image"][2]
    cost_b = (50 * 5 + 388 * 10 + 2 * 1056 * 80) / 1e6  # support.fake_upstream's usage
    after = used(client)
    assert after["requests"] - before["requests"] == 1
    assert after["images"] - before["images"] == 2
    assert after["usd"] - before["usd"] == pytest.approx(cost_b, abs=1e-6)
    assert post_variation(client).headers["x-gateway-upstream-model"] == "fo-b"
    assert [call.fields["model"] for call in upstream.received[3:]] == ["fo-b"]


def test_the_failover_shows_in_the_metric_and_the_audit_trail(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """The refused model reads 0 on gateway_upstream_model_available at once, its failover
    is counted once, and the audit trail has one `model.failover` entry by the gateway."""
    client = gateway("fm-a", "fm-b")
    assert metric(client, "gateway_upstream_model_available", "fm-a") == 1
    retire(upstream, "fm-a")
    for _ in range(2):
        assert post_variation(client).status_code == 200
    assert metric(client, "gateway_upstream_model_available", "fm-a") == 0
    assert metric(client, "gateway_upstream_model_available", "fm-b") == 1
    assert metric(client, "gateway_upstream_model_failovers_total", "fm-a") == 1
    entries = audit(client, "model.failover")
    assert [(e["actor"], e["credential"], e["target"], e["after"]["serving"]) for e in entries] == [
        ("gateway", {"source": "gateway"}, "model:fm-a", "fm-b")
    ]


def audit(client: TestClient, action: str) -> list[dict[str, Any]]:
    """The audit entries of `action`, waiting for them to be written (in the background)."""
    deadline = time.monotonic() + 5
    while True:
        answer = client.get(f"/admin/audit?action={action}", headers=auth("grafana"))
        entries: list[dict[str, Any]] = answer.json()["data"]
        if entries or time.monotonic() > deadline:
            return entries
        time.sleep(0.02)


def test_with_no_model_left_the_caller_gets_503_and_everything_back(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """Every model refused: 503 upstream_model_unavailable, x-should-retry false, naming no
    model; no unit is charged, not even the request's."""
    client = gateway("fn-a", "fn-b")
    retire(upstream, "fn-a", "fn-b")
    response = post_variation(client, fields={"n": "3"})
    error = assert_openai_error(response, 503, "upstream_model_unavailable", type_="server_error")
    assert response.headers["x-should-retry"] == "false"
    assert "fn-" not in error["message"] and "retire" not in error["message"]
    assert used(client) == {"requests": 0, "images": 0, "usd": 0}
    assert [call.fields["model"] for call in upstream.received] == ["fn-a", "fn-b"]
    again = post_variation(client)
    assert again.status_code == 503 and len(upstream.received) == 2  # nothing left to try


def test_a_model_the_upstream_does_not_list_is_never_called(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """The watch reads /models: a model it leaves out (and whose own entry is 404) is
    unavailable, and calls go to the next model without a refused call."""
    upstream.models = [model_entry("fl-b")]
    client = gateway("fl-a", "fl-b", watch_seconds=0.05)
    wait_for_reading(client)
    assert metric(client, "gateway_upstream_model_available", "fl-a") == 0
    response = post_variation(client)
    assert response.headers["x-gateway-upstream-model"] == "fl-b"
    assert [call.fields["model"] for call in upstream.received] == ["fl-b"]


def wait_for_reading(client: TestClient) -> dict[str, Any]:
    """GET /admin/models once the watch has read /models (it runs beside the requests)."""
    deadline = time.monotonic() + 5
    while True:
        view: dict[str, Any] = client.get("/admin/models", headers=auth("grafana")).json()
        if view["watch"]["checked_at"] is not None or time.monotonic() > deadline:
            return view
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2027-01-15", 1799971200.0),
        (1799971200, 1799971200.0),
        ("2027-01-15T00:00:00Z", 1799971200.0),
    ],
)
def test_the_watchs_shutdown_date_is_on_the_metric_and_the_admin_view(
    gateway: Callable[..., TestClient], upstream: FakeUpstream, given: object, expected: float
) -> None:
    """A shutdown date the upstream lists, as a date, a Unix timestamp or an ISO time, is
    gateway_upstream_model_shutdown_timestamp_seconds; a model without one has none."""
    upstream.models = [model_entry("fs-a", given), model_entry("fs-b")]  # type: ignore[arg-type]
    client = gateway("fs-a", "fs-b", watch_seconds=0.05)
    view = wait_for_reading(client)
    name = "gateway_upstream_model_shutdown_timestamp_seconds"
    assert metric(client, name, "fs-a") == expected
    assert metric(client, name, "fs-b") is None
    states = {m["model"]: m for m in view["models"]}
    assert states["fs-a"]["shutdown_date"] == "2027-01-15"
    assert states["fs-a"]["available"] is True and states["fs-b"]["listed"] is True


def test_a_failing_models_reading_is_counted_and_blocks_nothing(
    gateway: Callable[..., TestClient], upstream: FakeUpstream
) -> None:
    """/models answering 404 (an upstream without it): the reading's failure is in the view,
    the models stay available and calls are served."""
    client = gateway("fw-a", "fw-b", watch_seconds=0.05)
    view = wait_for_reading(client)
    assert view["watch"]["error"] == "the upstream answered HTTP 404"
    assert post_variation(client).headers["x-gateway-upstream-model"] == "fw-a"
    assert re.search(
        r"^gateway_upstream_model_watch_failures_total [1-9]", client.get("/metrics").text, re.M
    )
