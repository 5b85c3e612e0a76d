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

import orjson

from gateway.vocabulary import ResponseFormat, Size

URL_LIFETIME_SECONDS = 3600  # as OpenAI's: valid 60 minutes after `created`
Operation = Literal["variations", "generations", "edits"]


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


@dataclass(frozen=True)
class ImageOptions:
    """What a generations or edits request asks of the image model, validated and with the
    defaults filled in (so equal requests have equal options)."""

    prompt: str
    # The models that may answer, in order: the one the caller named, or those it may use
    # (the first serves; a refusal of it as gone hands the call to the next).
    models: tuple[str, ...]
    n: int
    size: str  # "auto" or "WIDTHxHEIGHT"
    quality: str
    output_format: str
    output_compression: int | None  # only with jpeg or webp
    background: str
    moderation: str | None  # generations only
    input_fidelity: str | None = None  # edits, for models that take it
    stream: bool = False  # answered as server-sent events (`gateway.streaming`), never cached
    partial_images: int = 0  # 0-3, with `stream`: each billed 100 image output tokens

    @property
    def model(self) -> str:
        """The model asked first: what the request is reserved and cached at."""
        return self.models[0]

    def payload(self) -> dict[str, str | int]:
        """The upstream call's parameters as JSON, the model and the pseudonym aside."""
        payload: dict[str, str | int] = {
            "prompt": self.prompt,
            "n": self.n,
            "size": self.size,
            "quality": self.quality,
            "output_format": self.output_format,
            "background": self.background,
        }
        optional = {
            "moderation": self.moderation,
            "output_compression": self.output_compression,
            "input_fidelity": self.input_fidelity,
        }
        payload.update({name: value for name, value in optional.items() if value is not None})
        if self.stream:
            payload.update(stream=True, partial_images=self.partial_images)
        return payload

    def fields(self) -> dict[str, str]:
        """`payload` as form fields (a boolean as `true`, as the SDKs send it)."""
        return {
            name: ("true" if value is True else str(value))
            for name, value in self.payload().items()
        }

    def key_material(self) -> tuple[str, ...]:
        """What of the options names the answer (the model too: it makes the images), as
        one JSON text: a prompt cannot pass for other parameters."""
        return (self.model, orjson.dumps(self.payload(), option=orjson.OPT_SORT_KEYS).decode())


class _AskedOptions:
    """`n` and `model` of a request of the image models, read from its options."""

    options: ImageOptions

    @property
    def n(self) -> int:
        return self.options.n

    @property
    def model(self) -> str:
        """The model asked first (see `ImageOptions.model`)."""
        return self.options.model


@dataclass(frozen=True)
class GenerationRequest(_AskedOptions):
    """A validated generations request: a prompt and its options."""

    operation: ClassVar[Operation] = "generations"
    response_format: ClassVar[ResponseFormat] = "b64_json"  # the models answer inline

    options: ImageOptions

    def key_material(self) -> tuple[str, ...]:
        """The operation and the options: the prompt is the whole input."""
        return (self.operation, *self.options.key_material())

    def sent(self) -> None:
        """Nothing to let go of: a prompt is small."""


@dataclass(frozen=True)
class InputImage:
    """One uploaded image (or mask) of an edit: its bytes, its digest and its type."""

    data: bytes
    digest: str  # "<hash>:<hex>", "" when the answer is never cached
    media_type: str  # image/png, image/jpeg or image/webp, from its bytes

    @property
    def filename(self) -> str:
        """The part's filename upstream: its type's extension."""
        return "image." + self.media_type.removeprefix("image/").replace("jpeg", "jpg")


@dataclass(frozen=True)
class EditRequest(_AskedOptions):
    """A validated edits request: the images (in order), the optional mask and options."""

    operation: ClassVar[Operation] = "edits"
    response_format: ClassVar[ResponseFormat] = "b64_json"

    options: ImageOptions
    images: tuple[InputImage, ...]
    mask: InputImage | None = None
    # Called once the images are no longer needed: gives back their upload budget.
    on_sent: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    def key_material(self) -> tuple[str, ...]:
        """The images' and the mask's digests, in order, and the options."""
        digests = tuple(image.digest for image in self.images)
        mask = self.mask.digest if self.mask is not None else "-"
        return (self.operation, *digests, f"mask={mask}", *self.options.key_material())

    def sent(self) -> None:
        """The images reached the upstream, or will not be sent: let go of them (the
        request's only mutation) and call `on_sent` (see `VariationRequest.sent`)."""
        self.share(((), None))

    def share(self, inputs: tuple[tuple[InputImage, ...], InputImage | None]) -> None:
        """Hold `inputs` (images and mask, shared with identical requests) instead of this
        request's own, and call `on_sent`: its own upload is let go of."""
        object.__setattr__(self, "images", inputs[0])
        object.__setattr__(self, "mask", inputs[1])
        if self.on_sent is not None:
            self.on_sent()


# What any operation asks: each has `n`, `response_format`, `key_material()` and `sent()`.
UpstreamRequest = VariationRequest | GenerationRequest | EditRequest


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
        """USD reserved per image of `size` before the call (variations)."""

    def estimate(self, request: UpstreamRequest) -> float:
        """USD the whole of `request` (one of `operations`) is reserved at before the call."""

    async def produce(self, request: UpstreamRequest, user: str) -> UpstreamAnswer:
        """Answer `request` (one of `operations`) for the pseudonymous `user`; raises an
        `UpstreamError` subclass."""
