"""Today's models across live gateway processes on one Redis, in front of a fake OpenAI on
loopback: the serving model retired mid-run is failed over inside the call, once per
replica, and the metric and the alert rule show it; a model list changed at run time is
used by every replica within a second; the watch's shutdown date reaches the metric."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import yaml
from support.config import EDITS_PRICE, KEYS, auth, base_config, edits_upstream
from support.deploy_files import ALERT_RULES, promtool
from support.fake_upstream import (
    FakeUpstream,
    Received,
    Reply,
    edits_response,
    model_entry,
    model_not_found,
)
from support.pngs import make_png
from support.polling import becomes
from support.servers import GatewayProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
]
DEAR = {**EDITS_PRICE, "image_output_per_1m_tokens": 80.0}


def _config(url: str) -> dict[str, Any]:
    upstream = edits_upstream(url)
    upstream["edits"] = {
        "models": ["live-a", "live-b"],
        "prices": {"live-a": EDITS_PRICE, "live-b": DEAR},
    }
    config = {**base_config(url), "upstream": {**upstream, "watch_seconds": 1}}
    config["quotas"] = {"teams": {"vision": [{"unit": "usd", "limit": 50.0, "window": "month"}]}}
    return config


@pytest.fixture
def pair(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> list[GatewayProcess]:
    """Two gateway processes on one Redis, models live-a then live-b (dearer)."""
    upstream.script = lambda received: Reply(body=edits_response(received))
    upstream.models = [model_entry("live-a"), model_entry("live-b")]
    return [start_gateway(_config(upstream.url), {"REDIS_URL": clean_redis}) for _ in range(2)]


def _served_by(gateway: GatewayProcess) -> str:
    """Which model answers a create_variation through the official SDK."""
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS["alice"], max_retries=0) as sdk:
        raw = sdk.images.with_raw_response.create_variation(image=make_png(32), n=1)
        assert raw.parse().data
        return raw.headers["x-gateway-upstream-model"]


def _metric(gateway: GatewayProcess, name: str, model: str) -> str | None:
    text = httpx.get(gateway.url + "/metrics", timeout=5).text
    found = re.search(rf'^{name}{{model="{model}"}} (\S+)$', text, re.M)
    return found[1] if found else None


def _usd(gateway: GatewayProcess) -> float:
    rules = httpx.get(gateway.url + "/v1/quota", headers=auth(), timeout=5).json()["rules"]
    return float(next(rule["used"] for rule in rules if rule["unit"] == "usd"))


def test_the_serving_model_retired_mid_run_is_failed_over_in_the_call(
    pair: list[GatewayProcess], upstream: FakeUpstream, tmp_path: Path
) -> None:
    """live-a starts refusing as gone: the call that meets it on each replica is served by
    live-b and charged at live-b's price; each replica fails over once (one audit entry
    each), reads 0 on the availability metric, and the alert rule fires on that metric."""
    assert {_served_by(g) for g in pair} == {"live-a"}

    def retired(received: Received) -> Reply:
        if received.fields["model"] == "live-a":
            return Reply(status=404, body=model_not_found("live-a"))
        return Reply(body=edits_response(received))

    upstream.script = retired
    before = _usd(pair[0])
    assert [_served_by(g) for g in pair * 2] == ["live-b"] * 4
    asked = [call.fields["model"] for call in upstream.received[2:]]
    assert asked == ["live-a", "live-b", "live-a", "live-b", "live-b", "live-b"]
    per_call_b = (50 * 5 + 388 * 10 + 1056 * 80) / 1e6  # support.fake_upstream's usage
    assert _usd(pair[0]) - before == pytest.approx(4 * per_call_b, abs=1e-6)
    for gateway in pair:
        assert _metric(gateway, "gateway_upstream_model_available", "live-a") == "0.0"
        assert _metric(gateway, "gateway_upstream_model_failovers_total", "live-a") == "1.0"
    entries = httpx.get(
        pair[0].url + "/admin/audit?action=model.failover", headers=auth("grafana")
    ).json()["data"]
    assert len({e["source_address"] for e in entries}) == 2 and len(entries) == 2
    _alert_fires_on(pair[0], tmp_path)


def _alert_fires_on(gateway: GatewayProcess, tmp_path: Path) -> None:
    """GatewayUpstreamModelUnavailable fires for live-a, and only live-a, on the series the
    live gateway exposes (fed to promtool as they read now)."""
    text = httpx.get(gateway.url + "/metrics", timeout=5).text
    series = [
        {
            "series": f'{name}{{job="gateway",instance="gateway-1:8080",{labels}}}',
            "values": f"{value}x5",
        }
        for name, labels, value in re.findall(
            r"^(gateway_upstream_model_available)\{(.*)\} (\S+)$", text, re.M
        )
    ]
    tests = {
        "rule_files": [str(ALERT_RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "1m",
                        "alertname": "GatewayUpstreamModelUnavailable",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "model": "live-a"},
                                "exp_annotations": _annotations(
                                    "GatewayUpstreamModelUnavailable", "live-a"
                                ),
                            }
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "live_alert_test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    done = subprocess.run(
        [*promtool(), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _annotations(alert: str, model: str) -> dict[str, str]:
    """The alert's annotations as written in config/alerts.yml, for `model`."""
    groups = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))["groups"]
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == alert]
    return {k: v.replace("{{ $labels.model }}", model) for k, v in rule["annotations"].items()}


def _cli(gateway: GatewayProcess, *args: str) -> Any:
    env = {"GATEWAY_ADMIN_KEY": KEYS["grafana"], "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--url", gateway.url],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


def test_a_list_changed_at_run_time_is_used_by_both_replicas_within_a_second(
    pair: list[GatewayProcess], upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Through the CLI on one replica: price a new model, put it first; both replicas serve
    with it within 1 s, with no restart, and say `runtime`; unset, both go back."""
    first, second = pair
    upstream.models = [*(upstream.models or []), model_entry("live-c")]
    price = tmp_path / "price.yaml"
    price.write_text(yaml.safe_dump(EDITS_PRICE), encoding="utf-8")
    assert (
        _cli(first, "models", "price", "set", "live-c", "--from", str(price))["model"] == "live-c"
    )
    assert _cli(first, "models", "set", "live-c", "live-a")["models"] == ["live-c", "live-a"]

    def lists(gateway: GatewayProcess) -> Any:
        view = httpx.get(gateway.url + "/admin/models", headers=auth("grafana"), timeout=5).json()
        return view["lists"][0]

    assert becomes(lambda: all(lists(g)["models"] == ["live-c", "live-a"] for g in pair))
    assert lists(second)["source"] == "runtime"
    assert {_served_by(g) for g in pair} == {"live-c"}
    shown = _cli(second, "models", "show")
    assert {p["model"]: p["source"] for p in shown["prices"]}["live-c"] == "runtime"
    _cli(second, "models", "unset")
    assert becomes(lambda: all(lists(g)["source"] == "config" for g in pair))
    assert {_served_by(g) for g in pair} == {"live-a"}


def test_the_watchs_shutdown_date_reaches_every_replicas_metric(
    pair: list[GatewayProcess], upstream: FakeUpstream
) -> None:
    """The upstream announces live-b's shutdown: within a reading (watch_seconds 1) each
    replica exposes it as gateway_upstream_model_shutdown_timestamp_seconds."""
    upstream.models = [model_entry("live-a"), model_entry("live-b", "2027-01-15")]
    name = "gateway_upstream_model_shutdown_timestamp_seconds"
    assert becomes(lambda: all(_metric(g, name, "live-b") == "1.7999712e+09" for g in pair), 5.0)
    assert {_metric(g, name, "live-a") for g in pair} == {None}
