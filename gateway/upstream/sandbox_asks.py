"""What the sandbox's gpt-image-2 is asked: a generation's JSON or an edit's multipart, read
and checked as the model refuses them (OpenAI-shaped 400s naming the parameter).

The gateway validates before it spends, so a caller rarely meets these; they keep the
sandbox honest as an upstream (a test environment's own calls, and the gateway's adapters).
The rules are gpt-image-2's as the openai SDKs (November 2026) document them: `n` 1-10,
`size` `auto` or `WIDTHxHEIGHT` in multiples of 16 with the long edge at most 3840, the ratio
at most 3:1 and at most 3840x2160's pixels, `partial_images` 0-3, no `response_format`.
It draws `background: transparent` (later models take it): the gateway refuses it for a
model without it before anything reaches an upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from gateway.errors import InvalidRequest

QUALITIES = ("low", "medium", "high", "auto")
FORMATS = ("png", "jpeg", "webp")
BACKGROUNDS = ("transparent", "opaque", "auto")
MAX_IMAGES, MAX_PIXELS, MAX_EDGE = 16, 3840 * 2160, 3840
DEFAULT_SIZE = (1024, 1024)  # what `auto` comes out as here
_COMMON = frozenset(
    {
        "prompt", "model", "n", "size", "quality", "output_format", "output_compression",
        "background", "moderation", "stream", "partial_images", "user", "safety_identifier",
    }
)  # fmt: skip
GENERATION_FIELDS = _COMMON
EDIT_FIELDS = _COMMON | {"input_fidelity"}
EDIT_FILES = frozenset({"image", "image[]", "mask"})


@dataclass(frozen=True)
class Ask:
    """One checked request: what to draw, how many, at what size, in which format."""

    prompt: str
    model: str
    n: int
    size: tuple[int, int]
    quality: str
    output_format: str
    compression: int
    background: str
    stream: bool
    partial_images: int
    safety_identifier: str | None
    images: tuple[bytes, ...] = field(default=(), repr=False)  # an edit's; the first is edited
    mask: bytes | None = field(default=None, repr=False)

    @property
    def size_text(self) -> str:
        """The size as the answer names it."""
        return f"{self.size[0]}x{self.size[1]}"


def _bad(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, code=code, param=param)


def _integer(fields: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = fields.get(name, default)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"Invalid type for '{name}': expected an integer.", name, "invalid_type")
    if not low <= value <= high:
        raise _bad(f"'{name}' must be between {low} and {high}; got {value}.", name)
    return value


def _choice(fields: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = fields.get(name, allowed[-1] if name != "output_format" else "png")
    if value not in allowed:
        raise _bad(f"Invalid value for '{name}': expected one of {', '.join(allowed)}.", name)
    return str(value)


def _flag(fields: Mapping[str, Any], name: str) -> bool:
    value = fields.get(name, False)
    if value in (True, False, "true", "false"):
        return value in (True, "true")
    raise _bad(f"Invalid type for '{name}': expected a boolean.", name, "invalid_type")


def parse_size(value: object) -> tuple[int, int]:
    """`auto` or `WIDTHxHEIGHT` within gpt-image-2's limits; raises `InvalidRequest`."""
    if value in (None, "auto"):
        return DEFAULT_SIZE
    width, _, height = str(value).partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise _bad("'size' must be 'auto' or WIDTHxHEIGHT, for example 1536x864.", "size")
    w, h = int(width), int(height)
    if w % 16 or h % 16 or not w or not h:
        raise _bad("Width and height must both be multiples of 16.", "size")
    if max(w, h) > MAX_EDGE or w * h > MAX_PIXELS or max(w, h) > 3 * min(w, h):
        raise _bad("'size' is over the model's edge, pixel or aspect ratio limit.", "size")
    return w, h


def _ask(fields: Mapping[str, Any], allowed: frozenset[str], **files: Any) -> Ask:
    for name in fields:
        if name not in allowed:
            raise _bad(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _bad("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    if len(prompt) > 32000:
        raise _bad("'prompt' is longer than 32000 characters.", "prompt", "string_above_max_length")
    stream = _flag(fields, "stream")
    identifier = fields.get("safety_identifier") or fields.get("user") or None
    return Ask(
        prompt=prompt, model=str(fields.get("model") or "gpt-image-2"),
        n=_integer(fields, "n", 1, 1, 10), size=parse_size(fields.get("size")),
        quality=_choice(fields, "quality", QUALITIES),
        output_format=_choice(fields, "output_format", FORMATS),
        compression=_integer(fields, "output_compression", 100, 0, 100),
        background=_choice(fields, "background", BACKGROUNDS), stream=stream,
        partial_images=_integer(fields, "partial_images", 0, 0, 3) if stream else 0,
        safety_identifier=None if identifier is None else str(identifier), **files,
    )  # fmt: skip


async def read_generation(request: Request) -> Ask:
    """A generation's JSON body, checked; raises `InvalidRequest`."""
    try:
        fields = await request.json()
    except ValueError:
        raise _bad("The body is not valid JSON.", "body", "invalid_json") from None
    if not isinstance(fields, dict):
        raise _bad("The body must be a JSON object.", "body", "invalid_type")
    return _ask(fields, GENERATION_FIELDS)


async def read_edit(request: Request) -> Ask:
    """An edit's multipart body (`image` or `image[]`, up to 16; `mask`), checked; raises
    `InvalidRequest`."""
    fields: dict[str, str] = {}
    files: dict[str, list[bytes]] = {"image": [], "mask": []}
    try:
        async with request.form(max_files=MAX_IMAGES + 2, max_fields=64) as form:
            for name, value in form.multi_items():
                if not isinstance(value, UploadFile):
                    fields[name] = value
                elif name in EDIT_FILES:
                    files["mask" if name == "mask" else "image"].append(await value.read())
                else:
                    raise _bad(f"Unknown file parameter: '{name}'.", name, "unknown_parameter")
    except (HTTPException, MultiPartException, ValueError):
        raise _bad("The body is not multipart/form-data.", "body", "invalid_multipart") from None
    images = tuple(files["image"])
    if not images:
        raise _bad("Missing required parameter: 'image'.", "image", "missing_required_parameter")
    if len(images) > MAX_IMAGES:
        raise _bad(f"At most {MAX_IMAGES} images may be edited at once.", "image")
    mask = files["mask"][0] if files["mask"] else None
    return _ask(fields, EDIT_FIELDS, images=images, mask=mask)
