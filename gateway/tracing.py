"""OpenTelemetry traces: a server span per request, child spans at the seams of its path,
and the W3C trace context taken from trusted callers and sent upstream.

The one module that touches OpenTelemetry. The rest of the gateway sees three calls:
`span(name)` around a step (the door's checks, the cache probe and the coalescing wait,
quota reserve and settle, the upstream call), `note(...)` for what the request turned out
to be, and `outgoing()` for the headers an upstream call carries. Off (the default:
`settings.tracing`), the middleware opens no server span, so the tracer variable stays
unset and each call is one context-variable read returning a shared no-op: no SDK object
is made on the request path.

On, spans go to a `BatchSpanProcessor`: ending a span puts it on a bounded queue (spans
past it are dropped) and a background thread exports them, so a slow or dead collector
never holds up, or fails, a request. What spans carry: the endpoint, team, model, cache
result, images, usd, outcome and error code; never a key, a token, a prompt or a user id
(the caller's user stays in the access log only). The access log line gains the trace and
span ids (`Traced.end`).

A caller's `traceparent` is continued only from peers in `trusted_networks` (the trusted
identity proxies unless the config says otherwise); from anyone else a new trace starts,
so an outsider cannot tie the gateway's spans to a trace of their choosing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.errors import GatewayError
from gateway.settings.tracing import DEFAULT_SERVICE_NAME, TraceExport

log = logging.getLogger("gateway.tracing")
Attribute = str | int | float | None
# Set for the length of a traced request (and the tasks it starts): unset, nothing traces.
_TRACER: ContextVar[Tracer | None] = ContextVar("gateway_tracer", default=None)
_UNTRACED: AbstractContextManager[None] = contextlib.nullcontext()
_PROPAGATOR = TraceContextTextMapPropagator()
_CARRIED = (b"traceparent", b"tracestate")
CLIENT = SpanKind.CLIENT  # a call out of the gateway (the upstream)
# At shutdown, what is still queued gets this long to leave (a dead collector: dropped).
SHUTDOWN_SECONDS = 5.0
# Copied from the access-log fields onto the server span; `user` is left out on purpose.
_LOGGED = ("team", "auth", "cache", "outcome", "error")


def span(name: str, kind: SpanKind = SpanKind.INTERNAL) -> AbstractContextManager[object]:
    """A child span of the current request around a step; a shared no-op when untraced, or
    when the request was not sampled (its children would not be either). A step that
    raises marks its span failed with the error's code (never its message)."""
    tracer = _TRACER.get()
    # Sampled, not "recording": a call that outlives its caller goes on after the request's
    # span has ended, and its steps still belong in the trace.
    if tracer is None or not trace.get_current_span().get_span_context().trace_flags.sampled:
        return _UNTRACED
    return _child(tracer, name, kind)


def note(**attributes: Attribute) -> None:
    """Set `gateway.<name>` attributes on the current span (None values are skipped)."""
    if _TRACER.get() is None:
        return
    trace.get_current_span().set_attributes(
        {f"gateway.{name}": value for name, value in attributes.items() if value is not None}
    )


def outgoing() -> dict[str, str]:
    """The W3C `traceparent` for an outgoing call from the current span ({} when untraced).
    Only it: `tracestate` would carry a trusted caller's own text upstream, and nothing of
    the caller's goes there (the upstream request is rebuilt from an allowlist)."""
    carrier: dict[str, str] = {}
    if _TRACER.get() is not None:
        _PROPAGATOR.inject(carrier)
    return {name: value for name, value in carrier.items() if name == "traceparent"}


@contextlib.contextmanager
def _child(tracer: Tracer, name: str, kind: SpanKind) -> Iterator[Span]:
    with tracer.start_as_current_span(
        name, kind=kind, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            _failed(current, exc)
            raise


def _failed(current: Span, exc: BaseException) -> None:
    code = exc.code if isinstance(exc, GatewayError) else None
    current.set_attribute("error.type", code or type(exc).__name__)
    current.set_status(Status(StatusCode.ERROR))


class Traced:
    """A request's server span, ended with what the request turned out to be."""

    def __init__(self, current: Span | None) -> None:
        self._span = current

    def end(self, status: int, fields: MutableMapping[str, Any]) -> None:
        """Copy the access-log `fields` the span may carry and the answer's `status` onto it;
        add its trace and span ids to `fields` (so to the access-log line)."""
        current = self._span
        if current is None:
            return
        context = current.get_span_context()
        fields["trace_id"] = format(context.trace_id, "032x")
        fields["span_id"] = format(context.span_id, "016x")
        current.set_attribute("http.response.status_code", status or 499)
        for name in _LOGGED:
            if fields.get(name) is not None:
                current.set_attribute(f"gateway.{name}", str(fields[name]))
        if status >= 500 or not status:
            current.set_status(Status(StatusCode.ERROR))


NOT_TRACED = Traced(None)


class Tracing:
    """One process's tracer: opened with the app (`open`), shut at its end (`close`), and
    the server span of each request (`request`)."""

    def __init__(self, export: TraceExport) -> None:
        self._export = export
        self._networks = tuple(ipaddress.ip_network(cidr) for cidr in export.trusted_networks)
        self._tracer: Tracer | None = None
        self._processor: BatchSpanProcessor | None = None

    def open(self) -> None:
        """Start the exporter's background thread; the SDK reads its `OTEL_*` variables here."""
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self._processor = BatchSpanProcessor(_exporter(self._export))
        provider.add_span_processor(self._processor)
        self._tracer = provider.get_tracer("gateway")
        service, trusted = resource.attributes[SERVICE_NAME], len(self._networks)
        log.info("tracing on: %s exporter, service %s", self._export.exporter, service)
        log.info("traceparent continued from %d trusted network(s)", trusted)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Tracing]:
        """Open for the block, closed after it (however it ends)."""
        self.open()
        try:
            yield self
        finally:
            await self.close()

    async def close(self) -> None:
        """Export what is queued, for at most `SHUTDOWN_SECONDS`, off the event loop."""
        processor, self._processor, self._tracer = self._processor, None, None
        if processor is not None:
            # A daemon thread: a collector that never answers cannot hold up the exit.
            closing = threading.Thread(target=processor.shutdown, name="otel-close", daemon=True)
            closing.start()
            await asyncio.to_thread(closing.join, SHUTDOWN_SECONDS)

    @contextlib.contextmanager
    def request(
        self, scope: MutableMapping[str, Any], endpoint: str | None = None
    ) -> Iterator[Traced]:
        """The server span of the HTTP request `scope` (named by its method, and its path
        when it is the spending `endpoint`), current while the block runs."""
        tracer = self._tracer
        if tracer is None:  # before the lifespan opened it, or after it closed
            yield NOT_TRACED
            return
        method, route = scope["method"], scope["path"] if endpoint else None
        attributes = {"http.request.method": method}
        if endpoint:
            attributes.update({"http.route": scope["path"], "gateway.endpoint": endpoint})
        token = _TRACER.set(tracer)
        try:
            with tracer.start_as_current_span(
                f"{method} {route}" if route else method,
                context=self._parent(scope),
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as current:
                yield Traced(current)
        finally:
            _TRACER.reset(token)

    def _parent(self, scope: MutableMapping[str, Any]) -> Context | None:
        """The caller's trace context, if a trusted peer sent one."""
        if not self._networks or not self._trusts((scope.get("client") or (None,))[0]):
            return None
        carrier = {
            name.decode(): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _CARRIED
        }
        return _PROPAGATOR.extract(carrier) if carrier else None

    def _trusts(self, host: str | None) -> bool:
        try:
            address = ipaddress.ip_address(host or "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)


def _exporter(export: TraceExport) -> SpanExporter:
    if export.exporter == "console":
        return ConsoleSpanExporter()
    # Imported only when used: the OTLP exporter brings `requests` and protobuf with it.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
