"""What an upstream is asked and what it answers, and the `Upstream` interface the adapters
implement: records only, so the cache and the pipeline need not load an HTTP client.

Every endpoint that spends quota asks its upstream through the one call, `produce`: its
request record says which operation it is, and each adapter says which operations it
serves. A new operation adds its record here (and to `UpstreamRequest`), and an adapter
that serves it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal, NamedTuple, Protocol

from gateway.vocabulary import ResponseFormat, Size

URL_LIFETIME_SECONDS = 3600  # as OpenAI's: valid 60 minutes after `created`
Operation = Literal["variations"]


@dataclass(frozen=True)
class VariationRequest:
    """A validated variations request: the PNG bytes, their digest, and normalised
    parameters."""

    operation: ClassVar[Operation] = "variations"

    image: bytes
    image_digest: str  # "<hash>:<hex>" of the image, "" when its answer is never cached
    model: str
    n: int
    size: Size
    response_format: ResponseFormat
    # Called once the image is no longer needed (see `sent`): gives back its upload budget.
    on_sent: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    def sent(self) -> None:
        """The image has reached the upstream, or will not be sent: let go of its bytes (the
        request's only mutation) and call `on_sent`. An image held while the upstream takes
        10-60 s to answer would cost its size per request waiting."""
        self.share(b"")

    def share(self, image: bytes) -> None:
        """Hold `image` (the same bytes, shared with identical requests) instead of this
        request's own copy, and call `on_sent`: the request's own upload is let go of."""
        object.__setattr__(self, "image", image)
        if self.on_sent is not None:
            self.on_sent()

    def key_material(self) -> tuple[str, ...]:
        """What, besides the cache's scope and the upstream, names this request's answer."""
        return (self.image_digest, self.model, str(self.n), self.size, self.response_format)

    @property
    def side(self) -> int:
        """The asked images' width (and height), in pixels."""
        return int(self.size.partition("x")[0])


# What any operation asks: each has `n`, `response_format`, `key_material()` and `sent()`.
UpstreamRequest = VariationRequest


class UpstreamAnswer(NamedTuple):
    """A successful upstream answer: the body to relay and what it delivered.

    `usd` is the real cost when the upstream reported it (token usage), else None: the
    quota is then settled from the price table.
    """

    body: bytes
    images: int
    request_id: str | None
    usd: float | None = None


class Upstream(Protocol):
    """One way of producing answers (an adapter), for the operations it serves."""

    operations: frozenset[Operation]  # the requests it can produce answers for

    @property
    def identity(self) -> str:
        """What answers, for cache keys: a change of adapter or model is a miss."""

    @property
    def headers(self) -> Mapping[str, str]:
        """Added to every answer it produced."""

    def image_price(self, size: Size) -> float:
        """USD reserved per image of `size` before the call."""

    async def produce(self, request: UpstreamRequest, user: str) -> UpstreamAnswer:
        """Answer `request` (one of `operations`) for the pseudonymous `user`; raises an
        `UpstreamError` subclass."""
