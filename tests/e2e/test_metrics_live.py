"""/metrics and access logs of live gateways after a known sequence of requests."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.config import (
    EDITS_MODEL,
    KEYS,
    UPSTREAM_KEY,
    USER_SECRET,
    auth,
    base_config,
    edits_upstream,
)
from support.deploy_files import queried_metric_names
from support.fake_upstream import FakeUpstream, Reply, images_response
from support.pngs import make_png
from support.servers import GatewayProcess

pytestmark = pytest.mark.e2e
IMAGES = [make_png(20 + i) for i in range(3)]
# The outcomes of `known_sequence`, in order.
SEQUENCE = ("ok", "cache_hit", "quota_exceeded", "invalid", "unauthenticated", "upstream_error")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels (parsed by prometheus-client)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(all_samples: dict[Any, float], name: str, **labels: str) -> float:
    return all_samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def known_sequence(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream
) -> GatewayProcess:
    """A miss, a hit, a quota refusal, an invalid request, a bad key and an upstream failure."""
    config = {
        **base_config(upstream.url),
        "cache": {"enabled": True},
        "quotas": {"default": [{"unit": "images", "limit": 3, "window": "day"}]},
    }
    gateway = start_gateway(config)

    def post(image: bytes, n: str) -> httpx.Response:
        return gateway.post_variation(image, n=n, size="256x256")

    assert post(IMAGES[0], "2").headers["x-gateway-cache"] == "MISS"
    assert post(IMAGES[0], "2").headers["x-gateway-cache"] == "HIT"
    assert post(IMAGES[1], "2").status_code == 429
    assert post(IMAGES[1], "11").status_code == 400
    bad_key = {"Authorization": "Bearer nope"}
    assert httpx.post(gateway.url + "/v1/images/variations", headers=bad_key).status_code == 401
    upstream.reply(Reply(500, {"error": {"message": "down", "type": "server_error"}}))
    assert post(IMAGES[2], "1").status_code == 502
    return gateway


def test_scrape_after_a_known_sequence_has_exact_values(known_sequence: GatewayProcess) -> None:
    """Each outcome, cache result, image count and quota gauge is counted exactly."""
    metrics = samples(httpx.get(known_sequence.url + "/metrics").text)
    outcomes = {
        o: value(metrics, "gateway_requests_total", endpoint="variations", outcome=o)
        for o in SEQUENCE
    }
    assert outcomes == dict.fromkeys(SEQUENCE, 1)
    assert value(metrics, "gateway_cache_requests_total", result="hit") == 1
    assert value(metrics, "gateway_cache_requests_total", result="miss") == 3
    assert value(metrics, "gateway_images_total", team="vision") == 4
    assert (
        value(metrics, "gateway_quota_rejections_total", scope="user", unit="images", window="day")
        == 1
    )
    assert value(metrics, "gateway_upstream_duration_seconds_count") == 2
    assert (
        value(
            metrics, "gateway_request_duration_seconds_count", endpoint="variations", outcome="ok"
        )
        == 1
    )
    quota = {"scope": "user", "subject": "alice", "unit": "images", "window": "day"}
    assert [
        value(metrics, f"gateway_quota_{g}", **quota) for g in ("limit", "used", "remaining")
    ] == [3, 2, 1]
    assert value(metrics, "gateway_quota_used", **{**quota, "subject": "bob"}) == 0


def test_exposition_is_valid_for_promtool(known_sequence: GatewayProcess, tmp_path: Any) -> None:
    """promtool accepts the exposition (where promtool is installed; CI installs it)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    text = httpx.get(known_sequence.url + "/metrics").text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_series_the_dashboard_and_alerts_query_exists(
    known_sequence: GatewayProcess, start_gateway: Callable[..., GatewayProcess]
) -> None:
    """The Grafana dashboard and alert rules query only series a live /metrics exposes (the
    model series on a gateway with a model list: the edits adapter on the sandbox, which
    announces a shutdown date)."""
    upstream = edits_upstream("sandbox")
    upstream["sandbox"] = {"shutdown_dates": {EDITS_MODEL: "2027-03-01"}}
    edits = start_gateway({**base_config("sandbox"), "upstream": upstream})
    live: set[str] = set()
    deadline = time.monotonic() + 10  # the shutdown date comes with the watch's first read
    while "gateway_upstream_model_shutdown_timestamp_seconds" not in live:
        assert time.monotonic() < deadline, "the watch never read /models"
        live = {name for name, _ in samples(httpx.get(edits.url + "/metrics").text)}
        time.sleep(0.05)
    live |= {name for name, _ in samples(httpx.get(known_sequence.url + "/metrics").text)}
    missing = queried_metric_names() - live - {"up"}
    assert not missing


def test_logs_are_json_lines_without_secrets(known_sequence: GatewayProcess) -> None:
    """One JSON access line per request with the agreed fields; no key or secret anywhere."""
    known_sequence.stop()
    output = known_sequence.output()
    for secret in (*KEYS.values(), UPSTREAM_KEY, USER_SECRET):
        assert secret not in output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith('{"request_id"')]
    variations = [line for line in lines if line["path"] == "/v1/images/variations"]
    assert len(variations) == 6
    assert set(variations[0]) >= {
        "request_id",
        "user",
        "team",
        "outcome",
        "status",
        "cache",
        "upstream_ms",
        "total_ms",
    }
    assert tuple(line["outcome"] for line in variations) == SEQUENCE


def test_metrics_token_is_required_when_configured(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream
) -> None:
    """With metrics.token_env set, /metrics answers 401 without the bearer token."""
    config = {**base_config(upstream.url), "metrics": {"token_env": "METRICS_TOKEN"}}
    gateway = start_gateway(config, {"METRICS_TOKEN": "scrape-secret"})
    assert httpx.get(gateway.url + "/metrics").status_code == 401
    assert (
        httpx.get(gateway.url + "/metrics", headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    assert (
        httpx.get(
            gateway.url + "/metrics", headers={"Authorization": "Bearer scrape-secret"}
        ).status_code
        == 200
    )


@pytest.mark.redis
def test_two_workers_report_the_sum_of_their_counts(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> None:
    """With --workers 2 every scrape, whichever worker answers it, counts all requests."""
    upstream.script = lambda r: Reply(body=images_response(r))
    gateway = start_gateway(base_config(upstream.url), {"REDIS_URL": clean_redis}, workers=2)

    async def burst() -> list[int]:
        async with httpx.AsyncClient() as client:
            calls = [
                client.post(
                    gateway.url + "/v1/images/variations",
                    headers=auth(),
                    files={"image": ("a.png", IMAGES[0])},
                )
                for _ in range(20)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(burst()) == [200] * 20
    for _ in range(6):
        with httpx.Client() as fresh:  # new connections: any worker may answer
            metrics = samples(fresh.get(gateway.url + "/metrics").text)
        assert value(metrics, "gateway_requests_total", endpoint="variations", outcome="ok") == 20


@pytest.mark.redis
@pytest.mark.parametrize("workers", [1, 2])
def test_every_series_exists_at_zero_before_the_first_request(
    start_gateway: Callable[..., GatewayProcess],
    upstream: FakeUpstream,
    clean_redis: str,
    workers: int,
) -> None:
    """A fresh gateway exposes every outcome, cache result, configured rule's rejection
    series and configured team's images at 0, so the first event of each is an increase."""
    quotas = {
        "default": [{"unit": "requests", "limit": 5, "window": "minute"}],
        "users": {"alice": [{"unit": "images", "limit": 9, "window": "hour"}]},
        "teams": {"vision": [{"unit": "usd", "limit": 1.0, "window": "month"}]},
    }
    config = {**base_config(upstream.url), "quotas": quotas}
    gateway = start_gateway(config, {"REDIS_URL": clean_redis}, workers=workers)
    metrics = samples(httpx.get(gateway.url + "/metrics").text)
    outcomes = ("ok", "upstream_error", "store_error", "rate_limited", "not_found")
    assert [
        value(metrics, "gateway_requests_total", endpoint="variations", outcome=o) for o in outcomes
    ] == [0] * 5
    labels = [(("endpoint", "variations"), ("outcome", o)) for o in outcomes]
    assert all(("gateway_requests_total", pair) in metrics for pair in labels)
    for result in ("hit", "miss", "bypass", "coalesced", "error"):
        assert ("gateway_cache_requests_total", (("result", result),)) in metrics
    rejections = {
        dict(labels)["scope"] + ":" + dict(labels)["unit"] + ":" + dict(labels)["window"]
        for name, labels in metrics
        if name == "gateway_quota_rejections_total"
    }
    assert rejections == {"user:requests:minute", "user:images:hour", "team:usd:month"}
    teams = {dict(labels)["team"] for name, labels in metrics if name == "gateway_images_total"}
    assert teams == {"vision", "audio", "ops"}


def test_wrong_paths_and_methods_are_the_callers_outcomes(live: GatewayProcess) -> None:
    """A GET on the variations path is method_not_allowed and a POST to an unknown path
    not_found, in the access log and the request metrics, never internal_error."""
    assert httpx.get(live.url + "/v1/images/variations", headers=auth()).status_code == 405
    assert httpx.post(live.url + "/v1/images/nope", headers=auth()).status_code == 404
    metrics = samples(httpx.get(live.url + "/metrics").text)
    assert (
        value(
            metrics, "gateway_requests_total", endpoint="variations", outcome="method_not_allowed"
        )
        == 1
    )
    assert (
        value(metrics, "gateway_requests_total", endpoint="variations", outcome="internal_error")
        == 0
    )
    live.stop()
    lines = [json.loads(line) for line in live.output().splitlines() if '"request_id"' in line]
    assert [(line["status"], line["outcome"]) for line in lines if "/v1/" in line["path"]] == [
        (405, "method_not_allowed"),
        (404, "not_found"),
    ]


@pytest.mark.parametrize("polls", [False, True])
def test_polls_are_logged_only_when_asked(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, polls: bool
) -> None:
    """Successful health, readiness and metrics polls stay out of the access log unless
    `logging.polls` is on; /v1/quota lines name the caller."""
    config = {**base_config(upstream.url), "logging": {"polls": polls}}
    gateway = start_gateway(config)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(gateway.url + path).status_code == 200
    assert httpx.get(gateway.url + "/v1/quota", headers=auth("carol")).status_code == 200
    gateway.stop()
    lines = [json.loads(line) for line in gateway.output().splitlines() if '"request_id"' in line]
    logged = [line["path"] for line in lines]
    assert logged.count("/healthz") == int(polls)
    assert ("/readyz" in logged, "/metrics" in logged) == (polls, polls)
    quota = next(line for line in lines if line["path"] == "/v1/quota")
    assert (quota["user"], quota["team"], quota["auth"]) == ("carol", "audio", "key")
