"""Streamed answers for the fake upstream: server-sent events as OpenAI's image models send
them, written one at a time, optionally held at a gate so that a test can act (hang up the
caller) mid-stream before the upstream goes on.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from gateway.upstream.sse import frame
from support.fake_upstream import Received, Reply, generated_png
from support.loopback import QuietHandler

PARTIAL_TOKENS = 100  # image output tokens OpenAI bills per partial image
GATE_SECONDS = 30.0  # a gate never opened does not hang the suite


def stream_usage(output: int, *, text: int = 12, image: int = 0) -> dict[str, Any]:
    """A completed event's `usage`, with its input details."""
    return {
        "input_tokens": text + image,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image},
        "output_tokens": output,
        "total_tokens": text + image + output,
    }


@dataclass
class StreamScript:
    """What the fake upstream streams: per image, `partials` partial images then its
    completed event with `usage(index)`; `hold_after` events are written before waiting on
    `gate`; `cut_after`: the connection is dropped after that many events."""

    kind: str = "image_generation"
    partials: int = 2
    images: int = 1
    per_image: int = 1767  # output tokens of the image itself
    text: int = 12
    image_tokens: int = 0
    hold_after: int | None = None  # -1: before the head, as an upstream still thinking
    cut_after: int | None = None
    error_after: int | None = None  # an `error` event after that many, then the end
    gzip: bool = False  # the whole stream gzip-encoded (content-encoding: gzip), one chunk
    gate: threading.Event = field(default_factory=threading.Event)
    written: int = 0  # events written so far (the gateway may have read fewer)

    def events(self) -> list[bytes]:
        """Every event of the stream, in order."""
        b64 = base64.b64encode(generated_png()).decode()
        shared = {"created_at": 1700000000, "size": "1024x1024", "quality": "medium",
                  "background": "auto", "output_format": "png"}  # fmt: skip
        out = []
        for number in range(self.images):
            for index in range(self.partials):
                kind = f"{self.kind}.partial_image"
                out.append(frame(kind, {"type": kind, "b64_json": b64,
                                        "partial_image_index": index, **shared}))  # fmt: skip
            first = number == 0
            usage = stream_usage(
                self.per_image + PARTIAL_TOKENS * self.partials,
                text=self.text if first else 0, image=self.image_tokens if first else 0,
            )  # fmt: skip
            kind = f"{self.kind}.completed"
            out.append(frame(kind, {"type": kind, "b64_json": b64, "usage": usage, **shared}))
        if self.error_after is not None:
            error = {"message": "Image generation failed.", "type": "server_error",
                     "param": None, "code": "image_generation_failed"}  # fmt: skip
            out = [*out[: self.error_after], frame("error", {"type": "error", "error": error})]
        return out

    def billed_output(self) -> int:
        """The output tokens of the whole stream, as the upstream bills them."""
        return self.images * (self.per_image + PARTIAL_TOKENS * self.partials)

    def reply(self, received: Received) -> Reply:
        """The fake upstream's answer: this stream."""
        return Reply(raw=lambda handler: self._write(handler, received))

    def _write(self, handler: QuietHandler, received: Received) -> None:
        """The head, then each event as one chunk (HTTP/1.1 chunked, as OpenAI streams),
        the last chunk at the end; a cut stream stops without it."""
        if self.hold_after == -1:
            self.gate.wait(GATE_SECONDS)
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream; charset=utf-8")
        handler.send_header("x-request-id", received.request_id)
        handler.send_header("transfer-encoding", "chunked")
        if self.gzip:
            handler.send_header("content-encoding", "gzip")
        handler.end_headers()
        events = [gzip.compress(b"".join(self.events()))] if self.gzip else self.events()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for event in events:
                if self.written == self.cut_after:
                    _close(handler)  # no last chunk: the stream was cut
                    return
                if self.written == self.hold_after:
                    self.gate.wait(GATE_SECONDS)
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                handler.wfile.flush()
                self.written += 1
            handler.wfile.write(b"0\r\n\r\n")


def _close(handler: QuietHandler) -> None:
    """Close the connection mid-body (all written bytes delivered first)."""
    handler.wfile.flush()
    handler.connection.shutdown(socket.SHUT_RDWR)
    handler.close_connection = True
