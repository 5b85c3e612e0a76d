"""Streamed answers (`stream: true`): the upstream's server-sent events relayed to the caller
as they come, the charge settled by the pipeline's rules once the stream has ended.

    reserve (the pipeline's) -> open the upstream stream -> relay each chunk -> settle

The upstream is read by a task of its own (`Detached`), not by the caller's response: a
caller who hangs up mid-stream does not cancel the call, which the gateway reads to its end
and settles the same way (SPEC 6.2: the charge follows what the upstream did). Before the
request is sent, a hang-up gives everything back, as in the pipeline.

What the stream delivered is read from its events (`sse.Decoder`): each `*.completed` event
is one image delivered, and its `usage`, priced by the model that made it, is what it cost
(the partial images' output tokens are in it: OpenAI bills 100 image output tokens for each
partial image, its image generation guide's "Partial images cost"). The sum settles the
reservation (`Forward.settle`, the pipeline's). Partial images after the last completed
event (the stream ended, or was cut, before their image) are billed at those 100 tokens
each. A stream cut with no image completed is an answer lost after sending (`Forward.unwind`:
the charge is kept unless `upstream.on_timeout` is `refund`). Streamed answers are never
cached: each is its own call (`x-gateway-cache: BYPASS`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway import metrics, tracing
from gateway.cache import Cached
from gateway.errors import GatewayError
from gateway.pipeline import Forward, Metered, answer_headers, reserve, wait_disconnect
from gateway.services import Metering
from gateway.upstream.base import UpstreamAnswer
from gateway.upstream.pricing import PARTIAL_IMAGE_TOKENS
from gateway.upstream.sse import MEDIA_TYPE, Decoder, Event, frame
from gateway.upstream.streams import OpenedStream, StreamingUpstream

_OPENED, _END = object(), object()  # the reader's signals to the caller's response


def partial_usage(count: int) -> dict[str, Any]:
    """A `usage` block for `count` partial images and nothing else."""
    tokens = PARTIAL_IMAGE_TOKENS * count
    return {
        "input_tokens": 0,
        "output_tokens": tokens,
        "output_tokens_details": {"image_tokens": tokens, "text_tokens": 0},
    }


class Tally:
    """What a stream has delivered so far, from its events."""

    def __init__(self) -> None:
        self.images, self.partials = 0, 0  # partials: since the last completed image
        self.usages: list[Mapping[str, Any]] = []
        self._decoder = Decoder()

    def follow(self, chunk: bytes, *, end: bool = False) -> None:
        """Read the events `chunk` completes (`end`: the stream is over)."""
        events = self._decoder.feed(chunk) + (self._decoder.end() if end else [])
        for event in events:
            self._count(event)

    def _count(self, event: Event) -> None:
        # OpenAI names each event; one sent without a name is known by its JSON `type`.
        data = _json(event) if event.name is None else None
        kind = event.name or str(data.get("type", "") if data else "")
        if kind.endswith(".partial_image"):
            self.partials += 1
        elif kind.endswith(".completed"):
            usage = (data if data is not None else _json(event) or {}).get("usage")
            self.images, self.partials = self.images + 1, 0
            self.usages.append(usage if isinstance(usage, Mapping) else {})

    def cost(self, stream: OpenedStream) -> float | None:
        """USD of what was delivered, or None when a usage block had no usable counts."""
        usages = [*self.usages, partial_usage(self.partials)] if self.partials else self.usages
        costs = [stream.cost(usage) for usage in usages]
        if not costs or any(cost is None for cost in costs):
            return None
        return sum(cost for cost in costs if cost is not None)

    def delivered(self, stream: OpenedStream) -> UpstreamAnswer:
        """The stream's answer as the pipeline settles one (no body: it was relayed)."""
        return UpstreamAnswer(b"", self.images, stream.request_id, self.cost(stream))


def _json(event: Event) -> Mapping[str, Any] | None:
    """An event's data as a JSON object, or None."""
    try:
        data = event.json()
    except ValueError:
        return None
    return data if isinstance(data, Mapping) else None


class Relay:
    """One streamed call: the reader's task feeds the caller's response through a queue."""

    def __init__(self, forward: Forward, upstream: StreamingUpstream) -> None:
        self.forward, self._upstream = forward, upstream
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.stream: OpenedStream | None = None
        self.caller_gone = False
        self.tally = Tally()

    async def read(self) -> None:
        """Open the stream, read it to its end whoever listens, and settle the charge."""
        with tracing.span("upstream", tracing.CLIENT):
            await self._read()

    async def _read(self) -> None:
        forward, started = self.forward, time.perf_counter()
        forward.sent = True
        try:
            user = forward.metering.user_field(forward.metered.identity)
            self.stream = await self._upstream.open_stream(forward.metered.request, user)
        except BaseException as exc:
            try:
                with tracing.span("quota.settle"):
                    await asyncio.shield(forward.unwind(exc))
            finally:  # the caller's stream ends, however the settling went
                self.queue.put_nowait(exc)
            raise
        self.queue.put_nowait(_OPENED)
        try:
            await self._relay(self.stream)
        finally:
            await asyncio.shield(self.stream.aclose())
            metrics.UPSTREAM_SECONDS.observe(time.perf_counter() - started)

    async def _relay(self, stream: OpenedStream) -> None:
        try:
            async for chunk in stream.chunks():
                self.tally.follow(chunk)
                if not self.caller_gone:
                    self.queue.put_nowait(chunk)
            self.tally.follow(b"", end=True)
        except BaseException as exc:
            try:
                with tracing.span("quota.settle"):
                    await asyncio.shield(self._settle_cut(stream, exc))
            finally:
                self.queue.put_nowait(exc)
            raise
        try:
            with tracing.span("quota.settle"):
                await asyncio.shield(self._settle(stream))
        finally:  # a settle that fails (or is cancelled at shutdown) still ends the stream
            self.queue.put_nowait(_END)

    async def _settle(self, stream: OpenedStream) -> None:
        answer = self.tally.delivered(stream)
        tracing.note(images=answer.images, usd=answer.usd)
        await self.forward.settle(Cached(answer, "BYPASS"))
        team = self.forward.request.state.log.get("team", "")
        metrics.IMAGES.labels(team).inc(answer.images)

    async def _settle_cut(self, stream: OpenedStream, exc: BaseException) -> None:
        """A stream cut mid-way: what completed (and the partials since) as delivered; with
        nothing completed, the pipeline's rule for an answer lost after sending."""
        if self.tally.images:
            await self._settle(stream)
        else:
            await self.forward.unwind(exc)

    async def body(self) -> AsyncIterator[bytes]:
        """The caller's stream: the upstream's bytes as they come; an upstream failure
        mid-stream ends it with an `error` event (the SDKs raise it)."""
        try:
            while (item := await self.queue.get()) is not _END:
                if isinstance(item, GatewayError):
                    yield frame("error", {"type": "error", **item.body()})
                    return
                if isinstance(item, BaseException):
                    return
                assert isinstance(item, bytes)
                yield item
        finally:
            self.caller_gone = True  # the reader reads on, but keeps nothing for it


class _Relayed(StreamingResponse):
    """The caller's event stream; `ended` is called once it is over, however it ends (sent
    in full, the caller gone, or never started)."""

    def __init__(self, relay: Relay, headers: Mapping[str, str], ended: Callable[[], None]):
        super().__init__(relay.body(), media_type=MEDIA_TYPE, headers=headers)
        self._relay, self._ended = relay, ended

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._relay.caller_gone = True
            self._ended()


async def serve_stream(
    request: Request,
    metering: Metering,
    metered: Metered,
    *,
    ended: Callable[[], None] = lambda: None,
) -> Response:
    """Relay `metered`'s upstream event stream; the charge is settled when it ends, and
    `ended` called once the caller's side is over (the caller's place in flight)."""
    try:
        relay, headers = await _open(request, metering, metered)
    except BaseException:
        ended()
        raise
    return _Relayed(relay, headers, ended)


async def _open(
    request: Request, metering: Metering, metered: Metered
) -> tuple[Relay, dict[str, str]]:
    """Reserve, start the reader, and wait for the upstream stream to open: the relay and
    the answer's headers."""
    upstream = metered.upstream
    if not isinstance(upstream, StreamingUpstream):
        raise GatewayError("The upstream adapter cannot stream.")
    reservation = await reserve(metering, metered, "BYPASS")
    forward = Forward(request, metering, metered, reservation, "bypass", "", None)
    relay = Relay(forward, upstream)
    metering.background.start(relay.read())
    try:
        await _opened(request, relay)
    except GatewayError as exc:
        exc.headers.update(answer_headers(metering, metered, reservation, "BYPASS"))
        metrics.CACHE_REQUESTS.labels("bypass").inc()
        raise
    request.state.log.update(cache="BYPASS", outcome="ok")
    metrics.CACHE_REQUESTS.labels("bypass").inc()
    headers = answer_headers(metering, metered, reservation, "BYPASS")
    if relay.stream is not None and relay.stream.request_id:
        headers["x-upstream-request-id"] = relay.stream.request_id
    headers["cache-control"] = "no-cache"
    return relay, headers


async def _opened(request: Request, relay: Relay) -> None:
    """Return once the upstream stream is open; raise what opening it raised, or
    `ClientDisconnect` if the caller hung up first. The reader sends at once (nothing to
    wait for before: no cache, no coalescing), so a hang-up never cancels it."""
    first = asyncio.ensure_future(relay.queue.get())
    watcher = asyncio.ensure_future(wait_disconnect(request))
    try:
        await asyncio.wait((first, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not first.done():
        first.cancel()
        relay.caller_gone = True
        raise ClientDisconnect()
    item = first.result()
    if isinstance(item, BaseException):
        raise item
