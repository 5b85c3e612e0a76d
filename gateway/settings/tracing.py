"""Tracing's settings: the config's `tracing` section (whose `traceparent` is believed), and
whether traces are exported at all, read from the standard `OTEL_*` variables.

Off by default. The OpenTelemetry specification turns an SDK on unless told otherwise; a
gateway that nobody asked to trace must not try to reach a collector, so here tracing is on
only when the environment names an exporter (`OTEL_TRACES_EXPORTER=otlp` or `console`) or an
OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and
`OTEL_SDK_DISABLED` is not `true`. The rest of the `OTEL_*` variables (service name and
resource attributes, sampler, batch sizes, headers, timeouts, certificates) are read by
the OpenTelemetry SDK itself, once, when the process opens its tracer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Literal, NamedTuple

from pydantic import field_validator

from gateway.settings.types import Strict

Exporter = Literal["otlp", "console"]
# The service name when neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES gives one.
DEFAULT_SERVICE_NAME = "image-variations-gateway"
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


class TracingConfig(Strict):
    """Which callers may continue their own trace through the gateway."""

    # CIDRs of the peers whose W3C `traceparent` is continued; from any other peer it is
    # ignored (a new trace starts). None: identity.trusted_header.proxies, if configured.
    trusted_networks: tuple[str, ...] | None = None

    @field_validator("trusted_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for cidr in value or ():
            ipaddress.ip_network(cidr)  # ValueError names the bad entry (e.g. host bits set)
        return value


class TraceExport(NamedTuple):
    """Tracing switched on: where spans go, and the CIDRs whose `traceparent` is continued."""

    exporter: Exporter
    trusted_networks: tuple[str, ...]


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() == "true"


def _exporter(env: Mapping[str, str]) -> Exporter | None:
    """The exporter the environment names, or None; raises `ValueError` naming the variable
    for one this gateway does not ship."""
    named = env.get("OTEL_TRACES_EXPORTER", "").split(",")[0].strip().lower()
    if not named:
        return "otlp" if any(env.get(name) for name in _ENDPOINTS) else None
    if named == "none":
        return None
    if named not in ("otlp", "console"):
        raise ValueError(f"OTEL_TRACES_EXPORTER: {named} is not shipped (otlp, console or none)")
    return "otlp" if named == "otlp" else "console"


def _check_protocol(env: Mapping[str, str]) -> None:
    for name in _PROTOCOLS:
        protocol = env.get(name, "").strip()
        if protocol and protocol != "http/protobuf":
            raise ValueError(f"{name}: only http/protobuf is shipped, not {protocol}")
        if protocol:
            return


def trace_export(
    config: TracingConfig, header_proxies: tuple[str, ...], env: Mapping[str, str]
) -> TraceExport | None:
    """Tracing as the environment switches it: None when off. `header_proxies` are the
    trusted identity proxies, whose `traceparent` is believed unless the config says whose
    is. Raises `ValueError` naming the `OTEL_*` variable at fault."""
    if _flag(env, "OTEL_SDK_DISABLED"):
        return None
    exporter = _exporter(env)
    if exporter is None:
        return None
    if exporter == "otlp":
        _check_protocol(env)
    trusted = config.trusted_networks
    return TraceExport(exporter, header_proxies if trusted is None else trusted)
