"""The guard in front of the HTTP parser: request-line and head sizes, counted across reads."""

from __future__ import annotations

from gateway.errors import HeadersTooLarge, UriTooLong
from gateway.server.protocol import MAX_HEAD, MAX_REQUEST_LINE, HeadGuard, raw_response

LINE = b"POST /v1/images/variations HTTP/1.1\r\n"


def test_a_normal_head_split_anywhere_is_complete_where_it_ends() -> None:
    """A head arriving in pieces, its blank line split across two reads, is complete in the
    read that ends it, and counts only its own bytes."""
    head = LINE + b"Host: x\r\nContent-Length: 5\r\n\r\n"
    guard = HeadGuard()
    cut = len(head) - 2
    assert guard.feed(head[:cut]) is None and not guard.complete
    assert guard.feed(head[cut:] + b"hello") is None and guard.complete
    assert guard.seen == len(head)


def test_a_short_read_into_a_shared_buffer_ends_the_head_only_with_its_own_bytes() -> None:
    """Reads land in one buffer per event loop: a one-byte read leaves an earlier read's
    bytes behind it. A head whose last read ends in `\r` and whose next read is `\n`
    followed, in the buffer, by a stale `\r\n` is not complete: the guard stays armed (its
    time and size limits hold) until the head really ends."""
    guard = HeadGuard()
    buffer = bytearray(LINE + b"B: c\r")
    assert guard.feed(buffer) is None and not guard.complete
    buffer[:3] = b"\n\r\n"  # this read is the first byte; the other two are stale
    assert guard.feed(buffer, 1) is None and not guard.complete
    assert guard.seen == len(LINE) + len(b"B: c\r\n")
    assert guard.feed(b"\r\n") is None and guard.complete


def test_a_request_line_past_the_limit_is_a_414_even_before_it_ends() -> None:
    """A URL longer than MAX_REQUEST_LINE is refused as soon as that many bytes arrive
    without a line end, whatever the reads."""
    guard = HeadGuard()
    assert guard.feed(b"GET /" + b"a" * (MAX_REQUEST_LINE // 2)) is None
    assert isinstance(guard.feed(b"a" * MAX_REQUEST_LINE), UriTooLong)


def test_a_head_past_the_limit_is_a_431_before_it_ends() -> None:
    """Headers adding up to more than MAX_HEAD are refused while they still stream in."""
    guard = HeadGuard()
    assert guard.feed(LINE + b"X-Big: ") is None
    refusal = None
    for _ in range(MAX_HEAD // 4096 + 2):
        refusal = refusal or guard.feed(b"a" * 4096)
    assert isinstance(refusal, HeadersTooLarge)
    assert guard.seen <= MAX_HEAD + 4096


def test_a_refusal_is_a_whole_openai_shaped_response_that_closes() -> None:
    """The guard's answer carries the status, JSON error, length and Connection: close."""
    raw = raw_response(HeadersTooLarge())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in head and b"content-type: application/json" in head
    assert b"content-length: %d" % len(body) in head
    assert b'"code":"request_header_fields_too_large"' in body
