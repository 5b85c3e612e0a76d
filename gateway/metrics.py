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
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)

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


def precreate(
    endpoints: Iterable[str], rule_labels: Iterable[tuple[str, str, str]], teams: Iterable[str]
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
    for scope, unit, window in rule_labels:
        QUOTA_REJECTIONS.labels(scope, unit, window)
    for team in teams:
        IMAGES.labels(team)


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
    """gateway_usage_usd{team}: USD booked this UTC month, from the chargeback books."""
    family = GaugeMetricFamily(
        "gateway_usage_usd", "USD booked this calendar month (UTC), per team.", labels=["team"]
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
