"""The variations parameters: OpenAI's defaults filled in, each value checked as OpenAI would."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import NamedTuple, cast

from gateway.errors import InvalidRequest
from gateway.multipart import Hasher, Upload, read_upload
from gateway.png import check_png, looks_like_png
from gateway.upstream.base import VariationRequest
from gateway.vocabulary import RESPONSE_FORMATS, SIZES, ResponseFormat, Size

IMAGE_FIELD = "image"
FIELDS = frozenset({IMAGE_FIELD, "model", "n", "size", "response_format", "user"})
MAX_N = 10
DEFAULT_MODEL = "dall-e-2"  # OpenAI's default; the first allowed model if it is not allowed
_INTEGER = re.compile(r"[+-]?[0-9]+")


class ImageLimits(NamedTuple):
    """What an image request may ask, from the config: the models it may name, its input
    image's largest side, and how long its body may take to arrive."""

    models: tuple[str, ...]
    max_image_side: int
    body_timeout_seconds: float


def _parse_n(raw: str | None) -> int:
    if raw is None:
        return 1
    if not _INTEGER.fullmatch(raw):
        raise InvalidRequest(
            f"'{raw[:32]}' is not of type 'integer' - 'n'", code="invalid_type", param="n"
        )
    n = int(raw)
    if n < 1:
        raise InvalidRequest(
            f"{n} is less than the minimum of 1 - 'n'", code="integer_below_min_value", param="n"
        )
    if n > MAX_N:
        raise InvalidRequest(
            f"{n} is greater than the maximum of {MAX_N} - 'n'",
            code="integer_above_max_value",
            param="n",
        )
    return n


def one_of(name: str, value: str, allowed: Sequence[str]) -> str:
    """`value` if it is one of `allowed`, else OpenAI's 400 naming the parameter (the image
    API's parameters are checked with it too)."""
    if value not in allowed:
        raise InvalidRequest(
            f"'{value[:64]}' is not one of {list(allowed)} - '{name}'",
            code="invalid_value",
            param=name,
        )
    return value


def _choice(name: str, raw: str | None, default: str, allowed: tuple[str, ...]) -> str:
    return one_of(name, default if raw is None else raw, allowed)


def _image(upload: Upload, max_side: int) -> bytes:
    image = upload.image
    if image is None:
        raise InvalidRequest(
            "Missing required parameter: 'image'.", code="missing_required_parameter", param="image"
        )
    if not upload.image_is_file and not looks_like_png(image):
        raise InvalidRequest(
            "'image' must be a file upload, not a text field.", code="invalid_type", param="image"
        )
    check_png(image, max_side=max_side, size=upload.image_size)
    return image


def parse_params(upload: Upload, *, models: tuple[str, ...], max_side: int) -> VariationRequest:
    """Validate an upload; raises `InvalidRequest` with OpenAI's code and param.

    The text fields are checked first: they cost nothing, the image's walk costs the most.
    """
    fields = upload.fields
    model = _choice(
        "model",
        fields.get("model"),
        DEFAULT_MODEL if DEFAULT_MODEL in models else models[0],
        models,
    )
    n = _parse_n(fields.get("n"))
    size = cast(Size, _choice("size", fields.get("size"), "1024x1024", SIZES))
    response_format = cast(
        ResponseFormat,
        _choice("response_format", fields.get("response_format"), "url", RESPONSE_FORMATS),
    )
    image = _image(upload, max_side)
    return VariationRequest(image, upload.image_digest, model, n, size, response_format)


async def read_variation_request(
    content_type: str | None,
    body: AsyncIterator[bytes],
    limits: ImageLimits,
    hasher: Hasher | None = None,
) -> VariationRequest:
    """Read a variations upload from `body` and validate it: the one way a request is read.
    The image is hashed with `hasher` as it arrives, if one is given (see `read_upload`).

    Raises what `read_upload` and `parse_params` raise.
    """
    upload = await read_upload(
        content_type,
        body,
        allowed=FIELDS,
        file_field=IMAGE_FIELD,
        timeout_seconds=limits.body_timeout_seconds,
        hasher=hasher,
    )
    return parse_params(upload, models=limits.models, max_side=limits.max_image_side)
