"""Which `OTEL_*` environments turn tracing on, whose `traceparent` is believed, and what an
untraced request's seams cost: nothing but a shared no-op."""

from __future__ import annotations

import pytest
from support.config import ENV, base_config, merged

from gateway import tracing
from gateway.settings.build import build_settings
from gateway.settings.config import ConfigError, EnvironmentProblem, parse_config
from gateway.settings.tracing import TraceExport, TracingConfig, trace_export

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize(
    ("env", "exporter"),
    [
        ({}, None),
        (ENDPOINT, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, None),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, None),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "false"}, "otlp"),
        ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "otlp"),
    ],
)
def test_tracing_is_off_unless_the_environment_names_an_exporter(
    env: dict[str, str], exporter: str | None
) -> None:
    """Off by default; an exporter or an OTLP endpoint turns it on; `none` and
    OTEL_SDK_DISABLED=true keep it off whatever else is set."""
    found = trace_export(TracingConfig(), (), env)
    assert (found.exporter if found else None) == exporter


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        (
            {**ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
    ],
)
def test_an_exporter_or_protocol_not_shipped_stops_the_start(
    env: dict[str, str], variable: str
) -> None:
    """An exporter or an OTLP protocol the gateway does not ship is refused at start-up,
    naming the variable, rather than silently tracing nothing."""
    config = parse_config(base_config("http://127.0.0.1:9"))
    with pytest.raises(EnvironmentProblem, match=variable):
        build_settings(config, {**ENV, **env})


def test_traceparent_is_believed_from_the_trusted_proxies_unless_the_config_says_whose() -> None:
    """Unset, the trusted identity proxies' networks; set, the config's own list (even
    empty: nobody)."""
    identity = {
        "trusted_header": {"proxies": ["10.0.0.0/8"], "default_team": "vision"},
    }
    config = merged(base_config("http://127.0.0.1:9"), {"identity": identity})
    settings = build_settings(parse_config(config), {**ENV, **ENDPOINT})
    assert settings.tracing == TraceExport("otlp", ("10.0.0.0/8",))
    own = merged(config, {"tracing": {"trusted_networks": []}})
    assert build_settings(parse_config(own), {**ENV, **ENDPOINT}).tracing == TraceExport("otlp", ())


def test_a_trusted_network_must_be_a_network() -> None:
    """A CIDR with host bits set is refused, naming the key."""
    config = merged(
        base_config("http://127.0.0.1:9"), {"tracing": {"trusted_networks": ["10.0.0.1/8"]}}
    )
    with pytest.raises(ConfigError, match=r"tracing\.trusted_networks"):
        parse_config(config)


def test_untraced_seams_are_one_shared_no_op() -> None:
    """Outside a traced request every seam returns the same no-op object and sends no
    context: no span, no SDK object, is made."""
    assert tracing.span("a") is tracing.span("b", tracing.CLIENT)
    assert tracing.outgoing() == {}
    tracing.note(images=1)  # nothing to set it on: no error, no effect
