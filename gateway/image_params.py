"""The generations and edits parameters: OpenAI's defaults filled in, each value checked as
the model would, from what the model takes (`ModelCapabilities`, data, not code), before
anything is spent.

Generations come as JSON (`parse_generation`), edits as multipart (`image_inputs`): the same
options either way, typed strictly in JSON (`n` a number) and as strings in a form (`n`
as `"2"`). Every refusal is an `InvalidRequest` naming the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import orjson

from gateway.errors import InvalidRequest
from gateway.params import one_of
from gateway.settings.models import ModelCapabilities
from gateway.upstream.base import GenerationRequest, ImageOptions

MAX_N = 10
COMMON = frozenset(
    {"prompt", "model", "n", "size", "quality", "output_format", "output_compression"}
    | {"background", "response_format", "user", "safety_identifier", "stream", "partial_images"}
)
GENERATION_FIELDS = COMMON | {"moderation"}
IMAGE_FIELDS = ("image", "image[]")
EDIT_FILES = frozenset({*IMAGE_FIELDS, "mask"})
EDIT_FIELDS = COMMON | {"input_fidelity"} | EDIT_FILES
QUALITIES = ("low", "medium", "high", "auto")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_SIZE = re.compile(r"([1-9][0-9]{0,5})x([1-9][0-9]{0,5})")


class ModelRoom(NamedTuple):
    """The models a caller may name now, in order (with none named, the first serves and
    the rest stand by), and what each takes."""

    models: tuple[str, ...]
    capabilities: Callable[[str], ModelCapabilities]


def _string(raw: Mapping[str, object], name: str, default: str | None = None) -> str | None:
    value = raw.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be a string.", code="invalid_type", param=name)
    return value


def _integer(raw: Mapping[str, object], name: str, low: int, high: int, form: bool) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, str) and form and _INTEGER.fullmatch(value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(
            f"'{str(value)[:32]}' is not of type 'integer' - '{name}'",
            code="invalid_type",
            param=name,
        )
    if value < low:
        raise InvalidRequest(
            f"{value} is less than the minimum of {low} - '{name}'",
            code="integer_below_min_value",
            param=name,
        )
    if value > high:
        raise InvalidRequest(
            f"{value} is greater than the maximum of {high} - '{name}'",
            code="integer_above_max_value",
            param=name,
        )
    return value


def _choice(raw: Mapping[str, object], name: str, default: str, allowed: Sequence[str]) -> str:
    value = _string(raw, name, default)
    assert value is not None
    return one_of(name, value, allowed)


def _models(raw: Mapping[str, object], room: ModelRoom) -> tuple[str, ...]:
    """The models that may answer, in order: the one named, or the room's."""
    named = _string(raw, "model")
    if named is None:
        if not room.models:
            raise InvalidRequest(
                "No image model is available to you right now.", code="invalid_value", param="model"
            )
        return room.models
    if named not in room.models:
        raise InvalidRequest(
            f"The model '{named[:64]}' is not available here; use one of {list(room.models)}.",
            code="invalid_value",
            param="model",
        )
    return (named,)


def _size(raw: Mapping[str, object], caps: ModelCapabilities) -> str:
    """`auto`, or WIDTHxHEIGHT within the model's rules of sides, ratio and pixels."""
    size = _string(raw, "size", "auto")
    assert size is not None
    if size == "auto":
        return size
    found = _SIZE.fullmatch(size)
    if found is None:
        raise InvalidRequest(
            f"'{size[:32]}' is not a size: use 'auto' or WIDTHxHEIGHT.",
            code="invalid_value",
            param="size",
        )
    width, height = int(found[1]), int(found[2])
    long, short = max(width, height), min(width, height)
    rules = (
        (width % caps.size_multiple == 0 and height % caps.size_multiple == 0,
         f"each side must be a multiple of {caps.size_multiple}"),
        (long <= caps.max_edge, f"the long side must be at most {caps.max_edge}"),
        (long <= short * caps.max_ratio, f"the sides' ratio must be at most {caps.max_ratio:g}:1"),
        (caps.min_pixels <= width * height <= caps.max_pixels,
         f"width x height must be {caps.min_pixels} to {caps.max_pixels} pixels"),
    )  # fmt: skip
    for ok, rule in rules:
        if not ok:
            raise InvalidRequest(
                f"Invalid size '{size}': {rule}.", code="invalid_value", param="size"
            )
    return size


def _output(
    raw: Mapping[str, object], caps: ModelCapabilities, form: bool
) -> tuple[str, int | None, str]:
    """`output_format`, `output_compression` (jpeg and webp only) and `background`."""
    output_format = _choice(raw, "output_format", "png", OUTPUT_FORMATS)
    compression = _integer(raw, "output_compression", 0, 100, form)
    if compression is not None and output_format == "png":
        raise InvalidRequest(
            "'output_compression' is only taken with jpeg or webp.",
            code="invalid_value",
            param="output_compression",
        )
    background = _choice(raw, "background", "auto", ("transparent", "opaque", "auto"))
    if background == "transparent" and not caps.transparent_background:
        raise InvalidRequest(
            "This model does not take transparent backgrounds: use opaque or auto.",
            code="invalid_value",
            param="background",
        )
    if background == "transparent" and output_format == "jpeg":
        raise InvalidRequest(
            "A transparent background needs output_format png or webp.",
            code="invalid_value",
            param="background",
        )
    return output_format, compression, background


def streaming(raw: Mapping[str, object], form: bool) -> tuple[bool, int]:
    """`stream` (a boolean, `true`/`false` in a form) and `partial_images` (0-3, counted
    only with a stream, as the models do)."""
    partial = _integer(raw, "partial_images", 0, 3, form) or 0
    stream = raw.get("stream")
    if stream in (None, False, "false"):
        return False, 0
    if stream in (True, "true"):
        return True, partial
    raise InvalidRequest("'stream' must be a boolean.", code="invalid_type", param="stream")


def _fidelity(raw: Mapping[str, object], caps: ModelCapabilities) -> str | None:
    """An edit's `input_fidelity`, for a model that takes it."""
    if _string(raw, "input_fidelity") is None:
        return None
    if not caps.input_fidelity:
        raise InvalidRequest(
            "This model takes no 'input_fidelity': leave it out.",
            code="invalid_value",
            param="input_fidelity",
        )
    return _choice(raw, "input_fidelity", "low", ("low", "high"))


def _rest(raw: Mapping[str, object], form: bool) -> tuple[bool, int]:
    """The fields checked but not sent as they came: `response_format` (inline only), the
    caller's identity fields (replaced by the pseudonym); and `stream` and
    `partial_images`, returned."""
    if _choice(raw, "response_format", "b64_json", ("b64_json", "url")) == "url":
        raise InvalidRequest(
            "The GPT image models answer inline only: use 'b64_json'.",
            code="invalid_value",
            param="response_format",
        )
    _string(raw, "user")
    _string(raw, "safety_identifier")
    return streaming(raw, form)


def parse_options(
    raw: Mapping[str, object], room: ModelRoom, *, form: bool, edit: bool
) -> ImageOptions:
    """The options of a generations (or, `edit`, an edits) request; raises `InvalidRequest`."""
    prompt = _string(raw, "prompt")
    if not prompt:
        raise InvalidRequest(
            "Missing required parameter: 'prompt'.",
            code="missing_required_parameter",
            param="prompt",
        )
    models = _models(raw, room)
    caps = room.capabilities(models[0])
    if len(prompt) > caps.max_prompt_chars:
        raise InvalidRequest(
            f"'prompt' is longer than {caps.max_prompt_chars} characters.",
            code="string_above_max_length",
            param="prompt",
        )
    n = _integer(raw, "n", 1, MAX_N, form) or 1
    size = _size(raw, caps)
    quality = _choice(raw, "quality", "auto", QUALITIES)
    output_format, compression, background = _output(raw, caps, form)
    moderation = None if edit else _choice(raw, "moderation", "auto", ("auto", "low"))
    fidelity = _fidelity(raw, caps) if edit else None
    stream, partial_images = _rest(raw, form)
    return ImageOptions(
        prompt,
        models,
        n,
        size,
        quality,
        output_format,
        compression,
        background,
        moderation,
        fidelity,
        stream=stream,
        partial_images=partial_images,
    )


def parse_generation(body: bytes, room: ModelRoom) -> GenerationRequest:
    """A generations request from its JSON body; raises `InvalidRequest`."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
    if not isinstance(raw, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    for name in raw:
        if name not in GENERATION_FIELDS:
            raise InvalidRequest(
                f"Unrecognized request argument supplied: {str(name)[:64]}",
                code="unknown_parameter",
                param=str(name)[:64],
            )
    return GenerationRequest(parse_options(raw, room, form=False, edit=False))
