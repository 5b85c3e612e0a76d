"""What the adapters that call today's image models share: one call of an upstream endpoint
by model, failing over down the catalogue's list when the upstream says a model is gone,
and the cost of the answer from the `usage` it reports.

Both the edits adapter (variations fulfilled by an image model, `edits.py`) and the image
API adapter (generations and edits as callers ask them, `image_api.py`) go through
`ModelCalls.first`: the serving model is asked; a refusal of the model as gone
(`model_gone`) marks it in the catalogue and sends the same call to the next model the
request may use; with none left, 503 `upstream_model_unavailable`, refunded in full. To
send the input again, `Held` keeps it for a short window after sending while another model
is left (a refusal comes within it), then lets go of it as every request does.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

import httpx
import orjson

from gateway.errors import UpstreamModelUnavailable
from gateway.upstream.base import UpstreamRequest
from gateway.upstream.catalogue import ModelCatalogue
from gateway.upstream.client import error_object, malformed, str_or_none
from gateway.upstream.pricing import InputKind

LIST = "edits"  # the catalogue's model list the image models come from
# How long the input is kept after sending, for a refusal of the model to be sent on to the
# next one: a model the upstream lacks is refused on receipt, well within it. A refusal
# later than that still fails over, with a retryable answer (the SDKs retry it).
REFUSAL_WINDOW_SECONDS = 1.0
_GONE = re.compile(
    r"does not exist|deprecated|retired|shut ?down|no longer (available|supported)", re.I
)


def model_gone(status: int, error: Mapping[str, Any], model: str) -> bool:
    """Whether a refusal says the model itself is gone (not the request's fault)."""
    if str_or_none(error.get("code")) == "model_not_found":
        return True
    message = str(error.get("message") or "")
    names_model = error.get("param") == "model" or model in message
    if status in (404, 410):
        return names_model
    return status == 400 and names_model and _GONE.search(message) is not None


class Held:
    """A request's input, kept past sending for the refusal window when another model is
    left to send it to (a model's refusal can then go on), then let go of as any request's
    is; with no other model, let go of once sent."""

    def __init__(self, request: UpstreamRequest, window_seconds: float) -> None:
        self._request, self._window, self.released = request, window_seconds, False
        self._timer: asyncio.TimerHandle | None = None
        self.keep = False  # whether a refusal could go on to another model

    def sent(self) -> None:
        """The transport has written the input: keep it a little longer, if it may be
        needed again."""
        if self._timer is not None:
            self._timer.cancel()
        if not self.keep:
            self.release()
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._window, self.release)

    def release(self) -> None:
        """Let go of the input now (once)."""
        if self._timer is not None:
            self._timer.cancel()
        if not self.released:
            self.released = True
            self._request.sent()


class Answered(NamedTuple):
    """The upstream's 200, or its refusal that was not about the model, and the model."""

    response: httpx.Response
    model: str


class ModelCalls:
    """Calls by model over the catalogue's list, failing over while models are gone."""

    def __init__(
        self, catalogue: ModelCatalogue, window_seconds: float = REFUSAL_WINDOW_SECONDS
    ) -> None:
        self.catalogue, self._window = catalogue, window_seconds

    def candidates(self, allowed: tuple[str, ...] | None) -> tuple[str, ...]:
        """The models available now, in order: the list's, or `allowed`'s (in its order)."""
        available = self.catalogue.candidates(LIST)
        if allowed is None:
            return available
        return tuple(model for model in allowed if model in available)

    def held(self, request: UpstreamRequest) -> Held:
        """A holder of `request`'s input for one call (release it when the call ends)."""
        return Held(request, self._window)

    async def first(
        self,
        send: Callable[[str], Awaitable[httpx.Response]],
        held: Held,
        allowed: tuple[str, ...] | None = None,
    ) -> Answered:
        """The first answer that is not a refusal of its model as gone, asking each model
        `allowed` (None: the list's) that is available in turn; raises
        `UpstreamModelUnavailable` when none is left, and what `send` raises."""
        for _ in range(len(allowed or self.catalogue.models(LIST)) + 1):
            candidates = self.candidates(allowed)
            if not candidates:
                raise UpstreamModelUnavailable()
            if held.released:  # refused after the input was let go of: a retry works
                raise UpstreamModelUnavailable(retry=True)
            model = candidates[0]
            held.keep = len(candidates) > 1
            response = await send(model)
            if response.status_code == 200:
                return Answered(response, model)
            if not model_gone(response.status_code, error_object(response.content), model):
                return Answered(response, model)
            self.catalogue.refused(model, LIST, response.headers.get("x-request-id"))
        raise UpstreamModelUnavailable()

    def cost(self, model: str, usage: Mapping[str, Any], kind: InputKind, estimate: float) -> float:
        """USD the answer of `model` cost by its `usage`, else `estimate` (no usable
        counts: what the images made were reserved at)."""
        usd = self.catalogue.cost(model, usage, kind)
        return estimate if usd is None else usd


def parse_answer(content: bytes) -> tuple[int, list[Any], Mapping[str, Any]]:
    """`created`, the `data` items and the `usage` of an image model's answer; raises
    `UpstreamError` when it is not one."""
    try:
        answer = orjson.loads(content)
        items = answer["data"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise malformed() from exc
    if not isinstance(items, list):
        raise malformed()
    created = answer.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        created = int(time.time())
    usage = answer.get("usage")
    return created, items, usage if isinstance(usage, dict) else {}
