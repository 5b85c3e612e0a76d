"""What the deployment files query and where they are: shared by the deploy tests and the
live /metrics test (every series the dashboard and the alerts use must exist).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SENTINEL_OVERRIDE = ROOT / "docker-compose.sentinel.yml"  # quota state behind Sentinels
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONFIG = ROOT / "config"
GATEWAY_CONFIG = CONFIG / "gateway.compose.yaml"
NGINX_CONF = CONFIG / "nginx.conf"
PROMETHEUS_CONFIG = CONFIG / "prometheus.yml"
ALERT_RULES = CONFIG / "alerts.yml"
ALERTMANAGER = CONFIG / "alertmanager"
ALERTMANAGER_CONFIG = ALERTMANAGER / "alertmanager.yml"
ALERTMANAGER_RENDER = ALERTMANAGER / "render.sh"
GRAFANA = CONFIG / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "gateway.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"

GATEWAY_SERVICES = ("gateway-1", "gateway-2")
GATEWAY_PORT = 8080
IMAGE_CONFIG_PATH = "/etc/gateway/gateway.yaml"
# A chat webhook's URL is its credential: it is handled like the other secrets.
SECRET_VARIABLES = (
    "OPENAI_API_KEY",
    "GATEWAY_USER_SECRET",
    "GRAFANA_ADMIN_PASSWORD",
    "ALERT_WEBHOOK_URL",
)
DUMMY_SECRETS = {name: f"dummy-{name.lower()}" for name in SECRET_VARIABLES}
DEBIAN_TOOLS = "Debian: apt-get install docker-compose prometheus prometheus-alertmanager"

# SPEC section 6.5: the only metric names the gateway exposes.
SPEC_METRICS = frozenset(
    {
        "gateway_requests_total",
        "gateway_request_duration_seconds",
        "gateway_upstream_duration_seconds",
        "gateway_cache_requests_total",
        "gateway_images_total",
        "gateway_quota_limit",
        "gateway_quota_used",
        "gateway_quota_remaining",
        "gateway_quota_rejections_total",
        "gateway_store_errors_total",
        # Beyond 6.5: the chargeback books' month per team (the admin plane, docs/admin-api.md).
        "gateway_usage_usd",
        # SPEC 6.4: the image models as the upstream has them (docs/models.md).
        "gateway_upstream_model_available",
        "gateway_upstream_model_shutdown_timestamp_seconds",
        "gateway_upstream_model_failovers_total",
        "gateway_upstream_model_watch_failures_total",
    }
)
SPEC_HISTOGRAMS = frozenset(
    {"gateway_request_duration_seconds", "gateway_upstream_duration_seconds"}
)
# Series Prometheus makes itself for every target, not the gateway.
PROMETHEUS_SYNTHETIC = frozenset({"up"})

_PROMQL_STRING = re.compile(r""""(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`""")
_PROMQL_MATCHERS = re.compile(r"\{[^{}]*\}")
_PROMQL_RANGE = re.compile(r"\[[^\]]*\]")
_PROMQL_LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_PROMQL_IDENTIFIER = re.compile(r"(?<![\w.:])[A-Za-z_:][\w:]*")
_PROMQL_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}
)
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,")


def allowed_series() -> frozenset[str]:
    """Every series name a query may use: SPEC 6.5 names, histogram parts, Prometheus's own."""
    parts = {
        f"{name}{suffix}" for name in SPEC_HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")
    }
    return SPEC_METRICS | parts | PROMETHEUS_SYNTHETIC


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (Grafana variables allowed) selects."""
    text = _PROMQL_STRING.sub('""', expr)
    text = _GRAFANA_VARIABLE.sub("", text)
    for pattern in (_PROMQL_MATCHERS, _PROMQL_RANGE, _PROMQL_LABEL_LIST):
        text = pattern.sub(" ", text)
    names = set()
    for match in _PROMQL_IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in _PROMQL_KEYWORDS:
            continue  # a function or aggregation, or an operator keyword
        names.add(match.group())
    return names


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of the dashboard's panels."""
    return [node["expr"] for node in _walk(_load_dashboard()["panels"]) if "expr" in node]


def dashboard_variable_metrics() -> set[str]:
    """The metrics the dashboard's template variables read their values from."""
    found = set()
    for variable in _load_dashboard().get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        found.update(_LABEL_VALUES.findall(text))
    return found


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of config/alerts.yml."""
    groups = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def queried_metric_names() -> set[str]:
    """Every series name the Grafana dashboard and the alert rules query."""
    exprs = dashboard_exprs() + [rule["expr"] for rule in alert_rules()]
    names = set(dashboard_variable_metrics())
    for expr in exprs:
        names |= metric_names(expr)
    return names


def require_tool(name: str, command: list[str] | None, install: str = DEBIAN_TOOLS) -> list[str]:
    """The tool's command, or skip (fail in CI, which must have it: see .ci/run)."""
    if command is not None:
        return command
    message = f"{name} is not installed ({install})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must install it before the tests")
    pytest.skip(message)


def promtool() -> list[str]:
    """promtool's command (Debian's prometheus package), or skip (fail in CI)."""
    found = shutil.which("promtool")
    return require_tool("promtool", [found] if found else None)
