"""An edit's form: its images and mask checked from their bytes (PNG, JPEG or WebP, their
size, the mask's dimensions against the first image's), then its options
(`gateway.image_params`); and the reading of the form, each file hashed as it arrives."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from PIL import Image, UnidentifiedImageError

from gateway.errors import InvalidRequest
from gateway.image_params import EDIT_FIELDS, EDIT_FILES, IMAGE_FIELDS, ModelRoom, parse_options
from gateway.multipart import FileFields, FilePart, Hasher, read_upload
from gateway.png import PngInfo, png_info
from gateway.settings.models import ModelCapabilities
from gateway.upstream.base import EditRequest, InputImage

MAX_MASK_BYTES = 4 * 1024 * 1024  # OpenAI: the mask is a PNG "less than 4MB"
_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def _media_type(data: bytes) -> str | None:
    """PNG, JPEG or WebP, recognised by the bytes (never by a part's Content-Type)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for sig, kind in _SIGNATURES.items() if data.startswith(sig)), None)


def _dimensions(data: bytes, media_type: str, name: str) -> PngInfo:
    """The image's width and height from its header; a PNG's structure is checked whole."""
    try:
        if media_type == "image/png":
            return png_info(data)
        with Image.open(io.BytesIO(data)) as image:  # the header only: no pixel decoded
            return PngInfo(*image.size)
    except InvalidRequest as exc:
        exc.param = name
        raise
    except Image.DecompressionBombError:  # a header claiming hundreds of megapixels
        raise InvalidRequest(
            f"Invalid image dimensions: '{name}' has too many pixels.",
            code="invalid_image_dimensions",
            param=name,
        ) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InvalidRequest(
            f"Invalid input image: the '{name}' file is corrupt.",
            code="invalid_image_format",
            param=name,
        ) from None


def _input(
    part: FilePart, caps: ModelCapabilities, max_bytes: int, png_only: bool = False
) -> tuple[InputImage, PngInfo]:
    name = part.name
    if not part.is_file and _media_type(part.data) is None:
        raise InvalidRequest(
            f"'{name}' must be a file upload, not a text field.", code="invalid_type", param=name
        )
    if part.size >= max_bytes:
        raise InvalidRequest(
            f"Invalid input image: each '{name}' must be less than {max_bytes} bytes.",
            code="image_too_large",
            param=name,
        )
    media_type = _media_type(part.data)
    if media_type is None or (png_only and media_type != "image/png"):
        kinds = "a PNG" if png_only else "a PNG, JPEG or WebP"
        raise InvalidRequest(
            f"Invalid input image: '{name}' must be {kinds} file.",
            code="invalid_image_format",
            param=name,
        )
    info = _dimensions(part.data, media_type, name)
    if info.width == 0 or info.height == 0:
        raise InvalidRequest(
            f"Invalid image dimensions: '{name}' has no pixels.",
            code="invalid_image_dimensions",
            param=name,
        )
    return InputImage(part.data, part.digest, media_type), info


def parse_edit(
    fields: Mapping[str, str], files: Sequence[FilePart], room: ModelRoom
) -> EditRequest:
    """An edits request from its form: the options, then the images (up to the model's
    count) and the mask (a PNG of the first image's dimensions); raises `InvalidRequest`."""
    options = parse_options(fields, room, form=True, edit=True)
    caps = room.capabilities(options.model)
    parts = [part for part in files if part.name in IMAGE_FIELDS]
    if not parts:
        raise InvalidRequest(
            "Missing required parameter: 'image'.", code="missing_required_parameter", param="image"
        )
    if len(parts) > caps.max_input_images:
        raise InvalidRequest(
            f"At most {caps.max_input_images} images may be edited at once.",
            code="invalid_value",
            param=parts[0].name,
        )
    images = [_input(part, caps, caps.max_input_image_bytes) for part in parts]
    mask = next((part for part in files if part.name == "mask"), None)
    if mask is None:
        return EditRequest(options, tuple(image for image, _ in images))
    masked, info = _input(mask, caps, MAX_MASK_BYTES, png_only=True)
    first = images[0][1]
    if info[:2] != first[:2]:
        raise InvalidRequest(
            f"Invalid mask: it must be {first.width}x{first.height}, as the first image is, "
            f"not {info.width}x{info.height}.",
            code="invalid_image_dimensions",
            param="mask",
        )
    if not info.transparent:  # its fully transparent areas say where to edit: it needs some
        raise InvalidRequest(
            "Invalid mask: it must have an alpha channel; its fully transparent areas are "
            "where the image is edited.",
            code="invalid_image_format",
            param="mask",
        )
    return EditRequest(options, tuple(image for image, _ in images), masked)


async def read_edit(
    content_type: str | None,
    body: AsyncIterator[bytes],
    room: ModelRoom,
    *,
    max_body_bytes: int,
    timeout_seconds: float,
    new_hasher: Callable[[], Hasher] | None,
) -> EditRequest:
    """Read an edits form from `body` (each image and the mask hashed as it arrives, when
    `new_hasher` is given) and validate it; raises what `read_upload` and `parse_edit`
    raise."""
    longest = max((room.capabilities(model).max_prompt_chars for model in room.models), default=0)
    files = FileFields(
        EDIT_FILES,
        repeated=frozenset({"image[]"}),
        max_bytes=max_body_bytes,
        new_hasher=new_hasher,
        long_text={"prompt": 4 * longest},  # UTF-8: up to 4 bytes a character
    )
    upload = await read_upload(
        content_type,
        body,
        allowed=EDIT_FIELDS,
        file_field=None,
        timeout_seconds=timeout_seconds,
        files=files,
        max_body_bytes=max_body_bytes,
    )
    return parse_edit(upload.fields, upload.files, room)
