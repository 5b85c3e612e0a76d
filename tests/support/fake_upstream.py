"""A fake OpenAI upstream: a real HTTP server on loopback that records what it received.

Tests assert on the forwarded fields and headers, and script the answers (status, body,
headers, delay) to play every upstream fault.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import functools
import io
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from support.loopback import LoopbackServer, QuietHandler
from support.pngs import make_png

TINY_PNG = make_png(8)


@dataclass
class Received:
    """One request as the upstream saw it."""

    method: str
    path: str
    headers: dict[str, str]
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str | None, str, bytes]] = field(default_factory=dict)
    field_names: list[str] = field(default_factory=list)
    # Every file part in order (repeated `image[]` parts included): name, filename, type, bytes.
    parts: list[tuple[str, str | None, str, bytes]] = field(default_factory=list)
    json: dict[str, Any] | None = None  # a JSON body (generations)
    request_id: str = ""  # the x-request-id it answered with, unique per call
    # Images it made (and would bill): None when its answer never reaches the gateway whole
    # (hung, reset, truncated, malformed), which the gateway then charges as asked.
    produced: int | None = None


@dataclass
class Reply:
    """What the fake upstream answers."""

    status: int = 200
    body: bytes | dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # Writes the answer itself, byte by byte if it likes (support/upstream_faults.py).
    raw: Callable[[QuietHandler], None] | None = None


def images_response(received: Received) -> dict[str, Any]:
    """A valid ImagesResponse with as many images as asked, in the format asked."""
    n = int(received.fields.get("n", "1"))
    if received.fields.get("response_format") == "b64_json":
        data = [{"b64_json": base64.b64encode(TINY_PNG).decode()} for _ in range(n)]
    else:
        data = [
            {"url": f"https://upstream.invalid/img/{i}.png?se=2099-01-01T00%3A00%3A00Z&sig=x"}
            for i in range(n)
        ]
    return {"created": 1700000000, "data": data}


@functools.cache
def generated_png() -> bytes:
    """A 1024x1024 RGBA PNG, as a current image model answers an edit."""
    ramp = Image.linear_gradient("L").resize((1024, 1024))
    bands = (ramp, ramp.transpose(Image.Transpose.ROTATE_90), ramp, Image.new("L", ramp.size, 255))
    out = io.BytesIO()
    Image.merge("RGBA", bands).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def edits_usage(
    n: int, *, text: int = 50, image: int = 388, per_output: int = 1056
) -> dict[str, Any]:
    """A `usage` block as the edits endpoint reports it for `n` images."""
    return {
        "input_tokens": text + image,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image},
        "output_tokens": per_output * n,
        "total_tokens": text + image + per_output * n,
    }


def edits_response(received: Received) -> dict[str, Any]:
    """A gpt-image-style edits answer: `n` inline 1024x1024 PNGs and a `usage` block."""
    n = int(received.fields.get("n", "1"))
    image = base64.b64encode(generated_png()).decode()
    return {
        "created": 1700000000,
        "data": [{"b64_json": image} for _ in range(n)],
        "usage": edits_usage(n),
        "quality": received.fields.get("quality", "auto"),
        "size": received.fields.get("size", "auto"),
    }


def image_api_usage(
    n: int, *, text: int = 40, images: int = 0, details: bool = True
) -> dict[str, Any]:
    """A `usage` block of the generations or edits endpoint: `n` images of 1000 output
    tokens each; without its details blocks when `details` is False."""
    usage: dict[str, Any] = {
        "input_tokens": text + images,
        "output_tokens": 1000 * n,
        "total_tokens": text + images + 1000 * n,
    }
    if details:
        usage["input_tokens_details"] = {"text_tokens": text, "image_tokens": images}
        usage["output_tokens_details"] = {"image_tokens": 1000 * n, "text_tokens": 0}
    return usage


def image_api_response(received: Received, *, details: bool = True) -> dict[str, Any]:
    """A gpt-image answer to a generations (JSON) or edits (multipart) call: `n` inline
    PNGs, the options it was asked, and `usage` (input image tokens: 300 per input part)."""
    asked: dict[str, Any] = received.json if received.json is not None else received.fields
    n = int(asked.get("n", 1))
    image = base64.b64encode(TINY_PNG).decode()
    return {
        "created": 1700000000,
        "data": [{"b64_json": image} for _ in range(n)],
        "usage": image_api_usage(n, images=300 * len(received.parts), details=details),
        "size": asked.get("size", "auto"),
        "quality": asked.get("quality", "auto"),
        "output_format": asked.get("output_format", "png"),
        "background": asked.get("background", "auto"),
    }


def any_images_response(received: Received) -> dict[str, Any]:
    """The answer of whichever image endpoint `received` called: variations as dall-e-2
    answers them, generations and edits as gpt-image does."""
    if received.path.endswith("/variations"):
        return images_response(received)
    return image_api_response(received)


def multipart_parts(content_type: str, body: bytes) -> list[tuple[str, str | None, str, bytes]]:
    """Every file part of a multipart body, in order (stdlib parser)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts = []
    for part in message.iter_parts():
        if part.get_filename() is None:
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        name = str(part.get_param("name", header="content-disposition"))
        parts.append((name, part.get_filename(), part.get_content_type(), payload))
    return parts


def model_entry(model: str, shutdown_date: str | int | None = None) -> dict[str, Any]:
    """A model object as OpenAI's /v1/models lists it."""
    return {
        "id": model,
        "object": "model",
        "created": 1776729600,
        "owned_by": "system",
        "shutdown_date": shutdown_date,
    }


def model_not_found(model: str) -> dict[str, Any]:
    """The error OpenAI's users have seen for a model it does not have (HTTP 404)."""
    message = f"The model `{model}` does not exist or you do not have access to it."
    error = {"message": message, "type": "invalid_request_error", "param": None}
    return {"error": {**error, "code": "model_not_found"}}


def parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, str], dict[str, Any], list[str]]:
    """Text fields, file parts and field order of a multipart body (stdlib parser)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, str] = {}
    files: dict[str, Any] = {}
    names: list[str] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        names.append(str(name))
        payload = part.get_payload(decode=True)
        # A form part is a leaf, so decoding gives its bytes (never a nested message).
        assert isinstance(payload, bytes)
        if part.get_filename() is not None:
            files[str(name)] = (part.get_filename(), part.get_content_type(), payload)
        else:
            fields[str(name)] = payload.decode()
    return fields, files, names


def produced(reply: Reply) -> int | None:
    """How many images `reply` says were made: 0 for an error status, None when the answer
    cannot be read whole (the gateway cannot know what was made)."""
    if reply.raw is not None:
        return None
    if reply.status != 200:
        return 0
    data = reply.body.get("data") if isinstance(reply.body, dict) else None
    return len(data) if isinstance(data, list) else None


class FakeUpstream:
    """Start with `with FakeUpstream() as upstream:`; `upstream.url` is the /v1 base URL."""

    def __init__(self, *, parse: bool = True) -> None:
        self.parse = parse  # False: count requests without decoding them (load tests)
        self.received: list[Received] = []
        # What GET /v1/models lists (each a model object); None: it answers 404, as an
        # upstream without the endpoint. Reads are counted, not recorded in `received`.
        self.models: list[dict[str, Any]] | None = None
        self.model_reads = 0
        self.script: Callable[[Received], Reply] = lambda r: Reply(body=images_response(r))
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._handler_class())

    @property
    def url(self) -> str:
        return self._server.base + "/v1"

    def reply(self, reply: Reply) -> None:
        """Answer every following request with `reply`."""
        self.script = lambda _: reply

    def __enter__(self) -> FakeUpstream:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def models_answer(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET /v1/models or /v1/models/{id}, from `models`."""
        models = self.models
        if models is None or not path.startswith("/v1/models"):
            return 404, {"error": {"message": "Not found", "type": "invalid_request_error"}}
        if path == "/v1/models":
            return 200, {"object": "list", "data": models}
        wanted = urllib.parse.unquote(path.removeprefix("/v1/models/"))
        for entry in models:
            if entry["id"] == wanted:
                return 200, entry
        return 404, model_not_found(wanted)

    def _record(self, received: Received) -> Reply:
        with self._lock:
            self.received.append(received)
            received.request_id = f"upstream-req-{len(self.received)}"
        reply = self.script(received)
        received.produced = produced(reply)
        return reply

    def _handler_class(self) -> type[QuietHandler]:
        upstream = self

        class Handler(QuietHandler):
            request_id = ""

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                received = Received("POST", self.path, headers)
                multipart = headers.get("content-type", "").startswith("multipart/form-data")
                if multipart and upstream.parse:
                    received.fields, received.files, received.field_names = parse_multipart(
                        headers["content-type"], body
                    )
                    received.parts = multipart_parts(headers["content-type"], body)
                if headers.get("content-type") == "application/json" and upstream.parse:
                    received.json = json.loads(body)
                reply = upstream._record(received)
                self.request_id = received.request_id
                self._answer(reply)

            def do_GET(self) -> None:
                with upstream._lock:
                    upstream.model_reads += 1
                status, body = upstream.models_answer(self.path)
                headers = {"content-type": "application/json", "x-request-id": "models"}
                self.send_body(status, headers, json.dumps(body).encode())

            def _answer(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.raw is not None:
                    reply.raw(self)
                    return
                body = (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                )
                headers = {"content-type": "application/json", "x-request-id": self.request_id}
                self.send_body(reply.status, {**headers, **reply.headers}, body)

        return Handler
