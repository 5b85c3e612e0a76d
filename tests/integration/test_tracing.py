"""OpenTelemetry traces through the app, as a collector receives them: the span tree and
attributes of a miss, a hit, a coalesced call and a refusal, the trace context taken from
trusted callers only and sent upstream, and nothing at all when tracing is off."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient
from support.config import ENV, KEYS, UPSTREAM_KEY, auth, base_config, merged
from support.fake_upstream import FakeUpstream, Received, Reply, images_response
from support.fixtures import AppFactory
from support.otlp_receiver import (
    CLIENT,
    ERROR,
    SERVER,
    OtlpReceiver,
    ReceivedSpan,
    children,
    named,
)
from support.requests import post_variation

from gateway.app import create_app
from gateway.settings.build import build_settings
from gateway.settings.config import parse_config

ROOT = "POST /v1/images/variations"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
CACHED = {"cache": {"enabled": True}}


@pytest.fixture
def collector() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch, collector: OtlpReceiver) -> dict[str, str]:
    """Tracing on, exporting to the test's collector every 50 ms: the variables are in the
    environment (which the SDK reads) and returned (for the gateway's settings)."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def roots(collector: OtlpReceiver, count: int) -> list[ReceivedSpan]:
    """The first `count` server spans of the variations endpoint, in the order they ended."""
    spans = collector.wait_for(lambda s: sum(x.name == ROOT for x in s) >= count)
    return [s for s in spans if s.name == ROOT][:count]


def test_a_miss_is_one_trace_from_the_door_to_the_upstream_and_back(
    make_client: AppFactory,
    otel: dict[str, str],
    collector: OtlpReceiver,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A miss: the server span holds the door's checks, the cache probe, quota reserve and
    settle and the upstream call; the upstream got the upstream span's context; the access
    log names the trace; no attribute carries a key, the user or the prompt's image."""
    client = make_client(CACHED, otel)
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        response = post_variation(client, fields={"size": "256x256", "n": "2"})
    assert response.status_code == 200
    (root,) = roots(collector, 1)
    spans = collector.trace_of(root, "upstream", "quota.settle")
    assert children(spans, root) == [
        "cache.probe", "door.auth", "door.room", "quota.reserve", "quota.settle", "upstream",
    ]  # fmt: skip
    assert (root.kind, root.parent_id) == (SERVER, "")
    assert root.attributes | {"gateway.usd": round(root.attributes["gateway.usd"], 6)} == {
        "http.request.method": "POST",
        "http.route": "/v1/images/variations",
        "http.response.status_code": 200,
        "gateway.endpoint": "variations",
        "gateway.team": "vision",
        "gateway.auth": "key",
        "gateway.model": "dall-e-2",
        "gateway.cache": "MISS",
        "gateway.outcome": "ok",
        "gateway.images": 2,
        "gateway.usd": 0.032,  # two images at the configured 256x256 price
    }
    call = named(spans, "upstream")
    assert (call.kind, call.attributes) == (CLIENT, {"gateway.images": 2})
    version, trace_id, parent_id, flags = upstream.received[0].headers["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", root.trace_id, call.span_id)
    assert int(flags, 16) & 1  # sampled
    line = orjson.loads(caplog.records[-1].getMessage())
    assert (line["trace_id"], line["span_id"]) == (root.trace_id, root.span_id)
    everything = repr([(s.attributes, s.resource) for s in spans])
    for secret in (KEYS["alice"], UPSTREAM_KEY, "alice"):
        assert secret not in everything


def test_a_hit_never_reaches_the_upstream_span(
    make_client: AppFactory, otel: dict[str, str], collector: OtlpReceiver
) -> None:
    """A hit's trace has the door, the probe and the reserve, and no upstream call or wait;
    it cost nothing upstream."""
    client = make_client(CACHED, otel)
    assert post_variation(client).status_code == 200
    assert post_variation(client).headers["x-gateway-cache"] == "HIT"
    hit = roots(collector, 2)[1]
    spans = collector.trace_of(hit, "quota.reserve")
    assert children(spans, hit) == ["cache.probe", "door.auth", "door.room", "quota.reserve"]
    attributes = hit.attributes
    assert (attributes["gateway.cache"], attributes["gateway.images"]) == ("HIT", 1)
    assert (attributes["gateway.usd"], attributes["gateway.outcome"]) == (0.0, "cache_hit")


def test_a_coalesced_call_waits_in_its_own_span_while_the_leader_calls(
    make_client: AppFactory, otel: dict[str, str], collector: OtlpReceiver, upstream: FakeUpstream
) -> None:
    """Two identical requests, both let in before the upstream answers (the upstream holds
    its answer until both are charged): one trace calls upstream, the other waits for it in
    `cache.wait` and makes no call."""
    rules = {"default": [{"unit": "requests", "limit": 100, "window": "day"}]}
    client = make_client({**CACHED, "quotas": rules}, otel)
    upstream.script = _until_charged(client, 2)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: post_variation(client), range(2)))
    assert sorted(a.headers["x-gateway-cache"] for a in answers) == ["COALESCED", "MISS"]
    assert len(upstream.received) == 1
    by_result = {r.attributes["gateway.cache"]: r for r in roots(collector, 2)}
    leader = collector.trace_of(by_result["MISS"], "upstream", "quota.settle")
    waiter = collector.trace_of(by_result["COALESCED"], "cache.wait", "quota.settle")
    assert "upstream" in children(leader, by_result["MISS"])
    assert children(waiter, by_result["COALESCED"]) == [
        "cache.probe", "cache.wait", "door.auth", "door.room", "quota.reserve", "quota.settle",
    ]  # fmt: skip
    assert by_result["COALESCED"].attributes["gateway.usd"] == 0.0


def _until_charged(client: TestClient, requests: int) -> Any:
    """An upstream script that answers once `requests` requests are charged (both let in and
    past their cache probe), or fails after 10 s: a barrier, never a sleep."""

    def script(received: Received) -> Reply:
        for _ in range(500):
            quota = client.get("/v1/quota", headers=auth("alice")).json()
            if quota["rules"][0]["used"] >= requests:
                return Reply(body=images_response(received))
            threading.Event().wait(0.02)
        return Reply(500, {"error": {"message": "never both there", "type": "server_error"}})

    return script


def test_a_refusal_for_quota_ends_at_the_reserve(
    make_client: AppFactory, otel: dict[str, str], collector: OtlpReceiver, upstream: FakeUpstream
) -> None:
    """A request over its quota: the reserve span failed with the refusal's code, the
    server span says 429 and why, nothing reached the upstream."""
    rules = {"default": [{"unit": "requests", "limit": 1, "window": "day"}]}
    client = make_client({"quotas": rules}, otel)
    assert post_variation(client).status_code == 200
    assert post_variation(client).status_code == 429
    refused = roots(collector, 2)[1]
    spans = collector.trace_of(refused, "quota.reserve")
    # The cache is off in this config: no probe.
    assert children(spans, refused) == ["door.auth", "door.room", "quota.reserve"]
    reserve = named(spans, "quota.reserve")
    assert (reserve.status, reserve.attributes["error.type"]) == (ERROR, "insufficient_quota")
    attributes = refused.attributes
    assert attributes["http.response.status_code"] == 429
    assert (attributes["gateway.error"], attributes["gateway.outcome"]) == (
        "insufficient_quota",
        "quota_exceeded",
    )
    assert attributes["gateway.cache"] == "BYPASS"
    assert refused.status != ERROR  # a refusal is the caller's, not a fault of the server
    assert len(upstream.received) == 1


def _client_from(upstream: FakeUpstream, env: dict[str, str], peer: str) -> TestClient:
    config = merged(base_config(upstream.url), {"tracing": {"trusted_networks": ["10.0.0.0/8"]}})
    settings = build_settings(parse_config(config), {**ENV, **env})
    return TestClient(create_app(settings), base_url="http://gateway.test", client=(peer, 5000))


@pytest.mark.parametrize(("peer", "continued"), [("10.1.2.3", True), ("192.0.2.7", False)])
def test_a_callers_trace_is_continued_only_from_a_trusted_network(
    otel: dict[str, str],
    collector: OtlpReceiver,
    upstream: FakeUpstream,
    peer: str,
    continued: bool,
) -> None:
    """A `traceparent` from a trusted network makes the server span its child (and the
    upstream gets the same trace); from anyone else it is ignored and a new trace starts.
    The caller's `tracestate` never goes upstream: it is the caller's own text."""
    with _client_from(upstream, otel, peer) as client:
        post_variation(client, headers={"traceparent": TRACEPARENT, "tracestate": "team=x"})
    (root,) = roots(collector, 1)
    assert (root.trace_id == CALLER_TRACE) is continued
    assert (root.parent_id == CALLER_SPAN) is continued
    assert upstream.received[0].headers["traceparent"].split("-")[1] == root.trace_id
    assert "tracestate" not in upstream.received[0].headers


def test_tracing_off_makes_no_span_sends_no_context_and_logs_no_ids(
    make_client: AppFactory,
    otel: dict[str, str],
    collector: OtlpReceiver,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With OTEL_SDK_DISABLED=true (an endpoint set all the same) nothing is exported, the
    upstream gets no trace context and the access log no trace id."""
    client = make_client(CACHED, {**otel, "OTEL_SDK_DISABLED": "true"})
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        assert post_variation(client).status_code == 200
    client.__exit__(None, None, None)  # a tracer would flush what it holds on shutdown
    assert collector.received() == [] and collector.posts == 0
    assert "traceparent" not in upstream.received[0].headers
    assert "trace_id" not in orjson.loads(caplog.records[-1].getMessage())


def test_an_unsampled_request_makes_no_child_span_but_passes_its_context_on(
    make_client: AppFactory,
    otel: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    collector: OtlpReceiver,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the sampler keeping nothing, nothing is exported, yet the access log names the
    request's trace and the upstream gets it, marked not sampled."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    client = make_client(CACHED, otel)
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        assert post_variation(client).status_code == 200
    client.__exit__(None, None, None)  # the tracer flushes what it holds on shutdown
    assert collector.received() == []
    line = orjson.loads(caplog.records[-1].getMessage())
    _, trace_id, parent_id, flags = upstream.received[0].headers["traceparent"].split("-")
    assert (trace_id, parent_id) == (line["trace_id"], line["span_id"])
    assert int(flags, 16) & 1 == 0
