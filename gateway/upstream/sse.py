"""Server-sent events as OpenAI's image streams carry them: framing and reading.

With `stream: true`, `POST /v1/images/generations` and `/v1/images/edits` answer
`text/event-stream`, one event per message, its name on an `event:` line and its JSON on one
`data:` line, a blank line after each (OpenAI's API reference, "Image Streaming"):

    event: image_generation.partial_image
    data: {"type":"image_generation.partial_image","b64_json":"...","partial_image_index":0,...}

    event: image_generation.completed
    data: {"type":"image_generation.completed","b64_json":"...","usage":{...},...}

Edits send `image_edit.partial_image` and `image_edit.completed`. The SDKs read the JSON's
`type` (openai-python's `ImageGenStreamEvent`, a union discriminated on it). `Decoder` reads
any stream the SSE standard allows (CR, LF or CRLF line ends, several `data:` lines, comments,
a message cut across chunks), so the gateway can follow what it relays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

MEDIA_TYPE = "text/event-stream"


def frame(event: str, data: Mapping[str, Any]) -> bytes:
    """One message: `event` named, `data` as one line of JSON."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class Event(NamedTuple):
    """One message read: its name (None when it had no `event:` line) and its data."""

    name: str | None
    data: str

    def json(self) -> Any:
        """The data as JSON; raises `orjson.JSONDecodeError`."""
        return orjson.loads(self.data)


class Decoder:
    """Reads messages out of a byte stream, whatever its chunks (the SSE standard's
    parsing rules: the `event` and `data` fields, comments and other fields skipped)."""

    def __init__(self) -> None:
        # What is not a whole line yet, appended to in place; `_scanned` of it holds no line
        # end, so a long line (a completed image's base64, megabytes in 64 KiB chunks) is
        # searched once, not once per chunk.
        self._buffer = bytearray()
        self._scanned = 0
        self._name: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        """The messages `chunk` completes (a CR at its end waits for a possible LF)."""
        self._buffer += chunk
        events: list[Event] = []
        while True:
            line, found = self._line()
            if not found:
                return events
            event = self._take(line)
            if event is not None:
                events.append(event)

    def end(self) -> list[Event]:
        """The stream has ended: the message a last CR completes, if any."""
        if self._buffer.endswith(b"\r"):
            return self.feed(b"\n")
        return []

    def _line(self) -> tuple[str, bool]:
        buffer = self._buffer
        cr, lf = buffer.find(b"\r", self._scanned), buffer.find(b"\n", self._scanned)
        if cr != -1 and cr == len(buffer) - 1 and (lf == -1 or lf > cr):
            self._scanned = cr
            return "", False  # a CR last: wait, it may be half of CRLF
        ends = [i for i in (cr, lf) if i != -1]
        if not ends:
            self._scanned = len(buffer)
            return "", False
        end = min(ends)
        width = 2 if buffer[end : end + 2] == b"\r\n" else 1
        line = buffer[:end].decode("utf-8", "replace")
        del buffer[: end + width]  # a bytearray drops its head without moving the rest
        self._scanned = 0
        return line, True

    def _take(self, line: str) -> Event | None:
        if not line:  # a blank line ends a message
            event = Event(self._name, "\n".join(self._data)) if self._data else None
            self._name, self._data = None, []
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._name = value
        elif field == "data":
            self._data.append(value)
        return None
