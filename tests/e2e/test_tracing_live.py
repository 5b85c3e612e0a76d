"""Traces from a live `gateway serve` configured by the standard OTEL_* variables, driven by
the openai SDK and by a caller who hangs up; and a collector that is down or silent, which
callers never notice."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from support.callers import multipart, open_raw, raw_head
from support.config import KEYS, base_config
from support.fake_upstream import FakeUpstream, Received, Reply, images_response
from support.otlp_receiver import OtlpReceiver, children, named
from support.pngs import make_png
from support.servers import GatewayProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),  # create_variation
]
ROOT = "POST /v1/images/variations"
PNG = make_png(20)
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@pytest.fixture
def collector() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def _otel(endpoint: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "images-gateway-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }


def _config(upstream: FakeUpstream) -> dict[str, Any]:
    return {**base_config(upstream.url), "tracing": {"trusted_networks": ["127.0.0.0/8"]}}


def _sdk(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS["alice"], max_retries=0)


def _variation(sdk: openai.OpenAI, **headers: str) -> Any:
    return sdk.images.with_raw_response.create_variation(
        image=("in.png", PNG, "image/png"), n=1, size="256x256", extra_headers=headers
    )


def test_the_sdks_trace_is_continued_through_the_gateway_to_the_upstream(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, collector: OtlpReceiver
) -> None:
    """A trusted caller's traceparent: the gateway's spans join the caller's trace under the
    configured service name, and the upstream gets the same trace from the upstream span."""
    gateway = start_gateway(_config(upstream), _otel(collector.endpoint))
    with _sdk(gateway) as sdk:
        answer = _variation(sdk, traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
    assert answer.http_response.status_code == 200
    spans = collector.wait_for(lambda s: {"upstream", "quota.settle", ROOT} <= {x.name for x in s})
    root = named(spans, ROOT)
    assert (root.trace_id, root.parent_id) == (CALLER_TRACE, CALLER_SPAN)
    assert root.resource["service.name"] == "images-gateway-test"
    assert {s.trace_id for s in spans} == {CALLER_TRACE}
    call = named(spans, "upstream")
    sent = upstream.received[0].headers["traceparent"].split("-")
    assert sent[1:3] == [CALLER_TRACE, call.span_id]


def test_a_caller_who_hangs_up_leaves_a_trace_whose_upstream_call_goes_on(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, collector: OtlpReceiver
) -> None:
    """A caller hangs up while the upstream works: the server span ends at once (499,
    client_gone), and its upstream call and the settling go on in the background, as
    children of the same span (the upstream holds its answer until the 499 is exported)."""
    arrived, release = threading.Event(), threading.Event()

    def held(received: Received) -> Reply:
        arrived.set()
        release.wait(15)
        return Reply(body=images_response(received))

    upstream.script = held
    gateway = start_gateway(_config(upstream), _otel(collector.endpoint))
    body, content_type = multipart(PNG, n="1", size="256x256")
    sock = open_raw(
        gateway.port, raw_head(gateway.port, length=len(body), content_type=content_type)
    )
    sock.sendall(body)
    assert arrived.wait(10)
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    spans = collector.wait_for(lambda s: any(x.name == ROOT for x in s))
    (root,) = [s for s in spans if s.name == ROOT]
    release.set()
    assert root.attributes["http.response.status_code"] == 499
    assert root.attributes["gateway.outcome"] == "client_gone"
    spans = collector.trace_of(root, "upstream", "quota.settle")
    assert {"upstream", "quota.settle"} <= set(children(spans, root))
    assert named(spans, "upstream").attributes["gateway.images"] == 1


def _refusing_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_collector() -> Iterator[str]:
    """A collector that takes connections and never answers (nor even accepts them)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("collector_state", ["refusing", "silent"])
def test_a_dead_collector_changes_nothing_for_callers(
    start_gateway: Callable[..., GatewayProcess],
    upstream: FakeUpstream,
    silent_collector: str,
    collector_state: str,
) -> None:
    """With the exporter pointed at a port that refuses, or at one that never answers, every
    call is answered as without tracing, each reaching the upstream once, and the gateway
    still stops cleanly when told to."""
    endpoint = (
        silent_collector if collector_state == "silent" else f"http://127.0.0.1:{_refusing_port()}"
    )
    gateway = start_gateway(base_config(upstream.url), _otel(endpoint))
    with _sdk(gateway) as sdk:
        answers = [_variation(sdk) for _ in range(12)]
    assert [a.http_response.status_code for a in answers] == [200] * 12
    assert all(len(a.parse().data) == 1 for a in answers)
    assert len(upstream.received) == 12
    gateway.stop()  # SIGTERM: the tracer's last export is bounded, the exit is clean
    assert "Application shutdown complete" in gateway.output()
    assert "Traceback" not in gateway.output()
