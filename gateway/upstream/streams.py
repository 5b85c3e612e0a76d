"""Upstream answers that arrive as server-sent events: the interface an adapter opens one
through, and the one implementation over an httpx answer read as it comes.

An adapter that serves `stream: true` (`StreamingUpstream`) sends the request and, once the
upstream has answered 200 with an event stream, hands back an `OpenedStream`: its bytes as
they arrive, and the price of a `usage` block by the model that answered. A refusal before
the stream starts is raised as any upstream error is, so the pipeline settles it the same
way. A stream cut mid-way raises `UpstreamAnswerLost` (or `UpstreamTimeout`): it was sent
and may have billed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import httpx

from gateway.errors import UpstreamAnswerLost, UpstreamError, UpstreamTimeout
from gateway.upstream.base import UpstreamRequest
from gateway.upstream.client import error_object, malformed
from gateway.upstream.model_calls import Held, ModelCalls
from gateway.upstream.pricing import InputKind
from gateway.upstream.sse import MEDIA_TYPE

Pricer = Callable[[Mapping[str, Any]], float | None]


class OpenedStream(Protocol):
    """An upstream event stream being read."""

    @property
    def request_id(self) -> str | None:
        """The upstream's request id (relayed as `x-upstream-request-id`)."""

    def chunks(self) -> AsyncIterator[bytes]:
        """The stream's bytes as they arrive, to its end; raises `UpstreamAnswerLost` or
        `UpstreamTimeout` when it is cut."""

    def cost(self, usage: Mapping[str, Any]) -> float | None:
        """USD a `usage` block of this stream costs (the answering model's prices), or
        None when it has no usable token counts."""

    async def aclose(self) -> None:
        """Let go of the connection (idempotent)."""


@runtime_checkable
class StreamingUpstream(Protocol):
    """An adapter that can answer a request as a stream of events."""

    async def open_stream(self, request: UpstreamRequest, user: str) -> OpenedStream:
        """Send `request` for the pseudonymous `user` and return its stream once the
        upstream answered 200; raises an `UpstreamError` subclass (as `produce` does)."""


class HttpStream:
    """An `OpenedStream` over an httpx answer opened with `stream=True`."""

    def __init__(self, response: httpx.Response, pricer: Pricer) -> None:
        self._response, self._pricer = response, pricer

    @property
    def request_id(self) -> str | None:
        """The upstream's `x-request-id`."""
        value = self._response.headers.get("x-request-id")
        return value if isinstance(value, str) else None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, decoded (the caller gets it without the upstream's
        content-encoding), httpx's failures as the gateway's."""
        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.HTTPError as exc:
            raise UpstreamAnswerLost("The upstream image service's stream was cut.") from exc

    def cost(self, usage: Mapping[str, Any]) -> float | None:
        """The answering model's price of `usage`."""
        return self._pricer(usage)

    async def aclose(self) -> None:
        """Close the answer (returns its connection to the pool)."""
        await self._response.aclose()


Send = Callable[[str], Awaitable[httpx.Response]]  # one model's call, its answer unread
Failure = Callable[[httpx.Response, Mapping[str, Any]], UpstreamError]


async def open_first(
    calls: ModelCalls,
    send: Send,
    held: Held,
    *,
    failure: Failure,
    kind: InputKind,
    allowed: tuple[str, ...] | None = None,
) -> HttpStream:
    """The stream of the first model that answers (`ModelCalls.first`'s failover), priced by
    that model; a refusal raises `failure(...)` of it, a 200 that is not an event stream
    `malformed()`. `send(model)` must POST with `stream=True`."""

    async def opened(model: str) -> httpx.Response:
        response = await send(model)
        if response.status_code != 200:  # read the refusal whole, as ModelCalls reads it
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response

    try:
        answered = await calls.first(opened, held, allowed)
    finally:
        held.release()
    response, model = answered.response, answered.model
    if response.status_code != 200:
        raise failure(response, error_object(response.content))
    if not response.headers.get("content-type", "").startswith(MEDIA_TYPE):
        await response.aclose()
        raise malformed()
    return HttpStream(response, lambda usage: calls.catalogue.cost(model, usage, kind))
