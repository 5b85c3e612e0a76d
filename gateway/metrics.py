"""Every metric, defined once; the /metrics exposition.

Counters and histograms live in prometheus-client's registry (its multiprocess mode when
`gateway serve --workers N` sets PROMETHEUS_MULTIPROC_DIR). The quota gauges are not kept
in the process: they are read from the store at scrape time, so every replica reports the
same numbers. Labels are closed sets or configured names, never ids, keys or image data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.errors import Outcome
from gateway.quota.counters import RuleState

CacheResult = Literal["hit", "miss", "bypass", "coalesced", "error"]
# What became of a budget alert's delivery attempt (notify/sender.py).
DeliveryResult = Literal["sent", "retried", "failed", "dropped"]
# Up to ten minutes: image calls take minutes at high quality and large sizes, and the
# default upstream timeout is 300 s.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 240, 300,
    420, 600,
)  # fmt: skip

REQUESTS = Counter(
    "gateway_requests", "Metered requests by endpoint and outcome.", ["endpoint", "outcome"]
)
REQUEST_SECONDS = Histogram(
    "gateway_request_duration_seconds",
    "Time to answer a metered request.",
    ["endpoint", "outcome"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_SECONDS = Histogram(
    "gateway_upstream_duration_seconds",
    "Time the upstream took to answer.",
    buckets=LATENCY_BUCKETS,
)
CACHE_REQUESTS = Counter("gateway_cache_requests", "Cache results.", ["result"])
IMAGES = Counter("gateway_images", "Images delivered to callers.", ["team"])
QUOTA_REJECTIONS = Counter(
    "gateway_quota_rejections", "Requests refused by a quota rule.", ["scope", "unit", "window"]
)
STORE_ERRORS = Counter("gateway_store_errors", "Quota store operations that failed.")
NOTIFICATIONS = Counter(
    "gateway_notifications",
    "Budget alert webhook deliveries: sent, retried (an attempt failed, another follows), "
    "failed (no attempt left), dropped (the queue was full or the gateway stopped).",
    ["result"],
)
MODEL_FAILOVERS = Counter(
    "gateway_upstream_model_failovers",
    "Calls that met the upstream's refusal of a model as gone and moved down the list.",
    ["model"],
)
MODEL_WATCH_FAILURES = Counter(
    "gateway_upstream_model_watch_failures", "Readings of the upstream's /models that failed."
)


def precreate(
    endpoints: Iterable[str],
    rule_labels: Iterable[tuple[str, str, str]],
    teams: Iterable[str],
    models: Iterable[str] = (),
) -> None:
    """Create every label set the gateway can emit, at zero, before the first request:
    `endpoints` are the spending endpoints' names (the route table's).

    A series that appears only when first incremented starts at 1, so Prometheus never
    sees its first jump: `increase()` and alerts would miss the rare events that matter.
    """
    for endpoint in endpoints:
        for outcome in get_args(Outcome):
            REQUESTS.labels(endpoint, outcome)
            REQUEST_SECONDS.labels(endpoint, outcome)
    for result in get_args(CacheResult):
        CACHE_REQUESTS.labels(result)
    for delivery in get_args(DeliveryResult):
        NOTIFICATIONS.labels(delivery)
    for scope, unit, window in rule_labels:
        QUOTA_REJECTIONS.labels(scope, unit, window)
    for team in teams:
        IMAGES.labels(team)
    for model in models:
        MODEL_FAILOVERS.labels(model)


def model_gauges(models: Iterable[tuple[str, bool, float | None]]) -> list[GaugeMetricFamily]:
    """gateway_upstream_model_available{model} (1/0) and, where the upstream gives one,
    gateway_upstream_model_shutdown_timestamp_seconds{model}, from (model, available,
    shutdown time) as this process knows them."""
    available = GaugeMetricFamily(
        "gateway_upstream_model_available",
        "1 while the upstream has the model (listed, not refused as gone), else 0.",
        labels=["model"],
    )
    shutdown = GaugeMetricFamily(
        "gateway_upstream_model_shutdown_timestamp_seconds",
        "When the upstream says the model shuts down (Unix time).",
        labels=["model"],
    )
    for model, is_available, shutdown_at in models:
        available.add_metric([model], 1.0 if is_available else 0.0)
        if shutdown_at is not None:
            shutdown.add_metric([model], shutdown_at)
    return [available, shutdown]


def quota_gauges(states: Iterable[RuleState]) -> list[GaugeMetricFamily]:
    """gateway_quota_limit / _used / _remaining from store readings."""
    labels = ["scope", "subject", "unit", "window"]
    families = {
        name: GaugeMetricFamily(
            f"gateway_quota_{name}", f"Quota {name}, read from the store.", labels=labels
        )
        for name in ("limit", "used", "remaining")
    }
    seen: set[tuple[str, str, str, str]] = set()
    for state in states:
        key = (state.scope, state.subject, state.unit, state.window)
        if key in seen:  # a team pool is listed once per member
            continue
        seen.add(key)
        families["limit"].add_metric(key, state.limit)
        families["used"].add_metric(key, state.used)
        families["remaining"].add_metric(key, state.remaining)
    return list(families.values())


def usage_gauge(usd_by_team: Mapping[str, float]) -> GaugeMetricFamily:
    """gateway_usage_usd{team}: USD booked this month (in the company's time zone, as
    `month_usd` reads it), from the chargeback books."""
    family = GaugeMetricFamily(
        "gateway_usage_usd",
        "USD booked this calendar month (quotas.timezone), per team.",
        labels=["team"],
    )
    for team, usd in sorted(usd_by_team.items()):
        family.add_metric([team], usd)
    return family


class _Families:
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self._families


def exposition(
    states: Iterable[RuleState],
    multiprocess_dir: str | None,
    extra: Sequence[GaugeMetricFamily] = (),
) -> bytes:
    """The Prometheus text: this process's (or all workers') metrics plus the quota gauges."""
    registry = CollectorRegistry()
    if multiprocess_dir:
        MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        own = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        own = generate_latest(REGISTRY)
    gauges = CollectorRegistry()
    gauges.register(_Families([*quota_gauges(states), *extra]))
    return own + generate_latest(gauges)
