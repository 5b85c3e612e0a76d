"""An OTLP/HTTP trace receiver as a collector runs one: a real HTTP server on loopback that
takes `POST /v1/traces`, decodes the protobuf `ExportTraceServiceRequest` with the OTLP
project's own generated classes (opentelemetry-proto), and keeps every span it was sent.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from support.loopback import LoopbackServer, QuietHandler

SERVER, CLIENT, INTERNAL = 2, 3, 1  # Span.SpanKind, as OTLP numbers them
ERROR = 2  # Status.StatusCode


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it (ids in hex, "" for a root's parent)."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    status: int
    resource: dict[str, Any]


@dataclass
class OtlpReceiver:
    """Start with `with OtlpReceiver() as collector:`; `collector.endpoint` is what
    `OTEL_EXPORTER_OTLP_ENDPOINT` names."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    posts: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._handler())

    @property
    def endpoint(self) -> str:
        return self._server.base

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def wait_for(
        self, found: Callable[[list[ReceivedSpan]], bool], seconds: float = 15.0
    ) -> list[ReceivedSpan]:
        """Every span received once `found(spans)` holds; raises if it never does in time."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            spans = self.received()
            if found(spans):
                return spans
            time.sleep(0.02)
        raise AssertionError(f"spans never arrived; got {[s.name for s in self.received()]}")

    def trace_of(self, root: ReceivedSpan, *names: str) -> list[ReceivedSpan]:
        """The spans of `root`'s trace, once each of `names` has arrived in it."""

        def complete(spans: list[ReceivedSpan]) -> bool:
            arrived = [s.name for s in spans if s.trace_id == root.trace_id]
            return all(arrived.count(name) >= names.count(name) for name in set(names))

        return [s for s in self.wait_for(complete) if s.trace_id == root.trace_id]

    def _keep(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        decoded = [
            ReceivedSpan(
                span.name,
                span.trace_id.hex(),
                span.span_id.hex(),
                span.parent_span_id.hex(),
                span.kind,
                _attributes(span.attributes),
                span.status.code,
                _attributes(resource_spans.resource.attributes),
            )
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self.spans.extend(decoded)
            self.posts += 1

    def _handler(self) -> type[QuietHandler]:
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_body(404, {}, b"")
                    return
                receiver._keep(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_body(200, {"content-type": "application/x-protobuf"}, answer)

        return Handler


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[str]:
    """The names of `parent`'s direct children, sorted."""
    return sorted(s.name for s in spans if s.parent_id == parent.span_id)


def named(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    """The one span called `name` (an error if there are none or several)."""
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]
