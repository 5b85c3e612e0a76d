"""Server-sent events: the frames the sandbox writes are what the openai SDK reads, and the
gateway's decoder reads any chunking and line ending the SSE standard allows."""

from __future__ import annotations

import pytest
from openai.types import ImageEditStreamEvent, ImageGenStreamEvent
from openai.types.image_edit_completed_event import ImageEditCompletedEvent
from openai.types.image_gen_partial_image_event import ImageGenPartialImageEvent
from pydantic import TypeAdapter

from gateway.upstream.sse import Decoder, Event, frame

PARTIAL = {
    "type": "image_generation.partial_image", "b64_json": "aGk=", "created_at": 1,
    "size": "1024x1024", "quality": "low", "background": "auto", "output_format": "png",
    "partial_image_index": 0,
}  # fmt: skip
COMPLETED = {
    "type": "image_edit.completed", "b64_json": "aGk=", "created_at": 2, "size": "1536x864",
    "quality": "high", "background": "opaque", "output_format": "webp",
    "usage": {
        "input_tokens": 400, "output_tokens": 7124, "total_tokens": 7524,
        "input_tokens_details": {"text_tokens": 12, "image_tokens": 388},
    },
}  # fmt: skip
STREAM = frame("image_generation.partial_image", PARTIAL) + frame("image_edit.completed", COMPLETED)


def _read(chunks: list[bytes]) -> list[Event]:
    decoder = Decoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)] + decoder.end()


def test_frames_parse_as_the_sdks_stream_event_types() -> None:
    """What `frame` writes, read back, validates as openai-python's own event unions."""
    partial, completed = _read([STREAM])
    assert partial.name == "image_generation.partial_image"
    parsed = TypeAdapter(ImageGenStreamEvent).validate_python(partial.json())
    assert isinstance(parsed, ImageGenPartialImageEvent) and parsed.partial_image_index == 0
    edit = TypeAdapter(ImageEditStreamEvent).validate_python(completed.json())
    assert isinstance(edit, ImageEditCompletedEvent)
    assert edit.usage.input_tokens_details.image_tokens == 388


@pytest.mark.parametrize("cut", range(1, 60, 7))
def test_a_message_cut_anywhere_across_chunks_reads_the_same(cut: int) -> None:
    """However the bytes are split into chunks, the same two messages come out, each once."""
    whole = _read([STREAM])
    pieces = [STREAM[i : i + cut] for i in range(0, len(STREAM), cut)]
    assert _read(pieces) == whole and len(whole) == 2


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"])
def test_every_line_ending_and_several_data_lines(newline: bytes) -> None:
    """CRLF, CR or LF; a comment line skipped; data lines joined with a newline; a CR
    at a chunk's end waits for its LF (no empty message from CRLF cut in two)."""
    text = b': keep-alive\nevent: x\ndata: {"a":\ndata: 1}\nid: 7\n\n'.replace(b"\n", newline)
    pieces = (
        [text[: text.index(b"\r") + 1], text[text.index(b"\r") + 1 :]] if b"\r" in text else [text]
    )
    (event,) = _read(pieces)
    assert event == Event("x", '{"a":\n1}') and event.json() == {"a": 1}


def test_a_message_without_an_end_is_not_read() -> None:
    """A message the stream cut before its blank line is not an event (nothing half-read)."""
    assert _read([STREAM[:-1]]) == _read([STREAM])[:1]
