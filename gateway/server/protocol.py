"""The refusals decided from a request's head alone, and uvicorn's HTTP/1.1 protocol
(httptools) that answers them, in front of its parser and before the app.

uvicorn has neither a limit on the size of a request head nor a timeout for receiving one:
a connection can stream a 100 MB header value (httptools joins its pieces as they come,
so the copying grows with the square of the size, and the memory is never given back) or
send half a head and wait forever, holding a socket. The guard counts the bytes of each
head before the parser sees them and answers, in OpenAI's shape, with the connection
closed:

- a request line longer than `MAX_REQUEST_LINE`: 414 `uri_too_long`;
- a head (request line and headers) longer than `MAX_HEAD`: 431
  `request_header_fields_too_large`;
- a head not received within `limits.header_timeout_seconds` of the connection opening,
  or of its first byte on a reused connection: 400 `request_timeout` (a connection that
  sent nothing is just closed);
- a head the parser cannot read: 400 `invalid_request` (uvicorn's answer is plain text).

The timeout comes from the app's lifespan state (`HEAD_SECONDS_STATE`), as the config
file is read in the app, not in the server.

A request to an endpoint that spends quota with no key at all (`KeylessDoor`, from the
lifespan state's `DOOR_STATE`) is answered here too, when its head is complete: the same 401
as the app's, with an `x-request-id`, `Connection: close`, its access-log line and its count
in `gateway_requests_total`, at a fraction of a pass through the app (no task, no Starlette,
no middleware): the cheapest refusal of the most common abuse. Its body is drained as
`door.Doorstep` says (only a small one, briefly, a few at once), then the connection
closed. A request pipelined behind one still running goes to the app, so that answers keep
their order.

The protocol reads into one buffer per event loop (`recv_into`, a buffered protocol) and the
parser's body pieces reach the app as it made them (`BodyPieces`): uvicorn would have each
read made into new bytes, then copy each piece into a bytearray and that into new bytes on
every receive, three copies of every upload; the parser's is the only one left.

Idle keep-alive connections are closed by uvicorn's own `timeout_keep_alive`; bodies have
`limits.body_timeout_seconds`. Bytes the parser is given in the same read as the end of a
head (a body, a pipelined request) are not counted, so a head is bounded by the limit plus
one read.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.auth.authenticator import Authenticator
from gateway.auth.base import missing_key
from gateway.door import Doorstep, LengthCheck, Spending
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    HeadersTooLarge,
    InvalidRequest,
    RequestTimeout,
    UriTooLong,
)
from gateway.middleware import new_request_id, record_request

MAX_REQUEST_LINE = 8 * 1024  # nginx's default large_client_header_buffers size
MAX_HEAD = 64 * 1024  # room for an SSO token (up to 16 KiB) and the usual headers
HEAD_SECONDS = 10.0  # the default of limits.header_timeout_seconds
HEAD_SECONDS_STATE = "gateway.header_timeout_seconds"
DOOR_STATE = "gateway.keyless_door"
_END_OF_HEAD = b"\r\n\r\n"
# The most one read takes from a socket: uvloop's own read buffer's size. More would mean
# fewer reads per upload but more of it held per connection before the app's budget counts
# it (uvicorn stops reading a body past 64 KiB unread: one read's worth).
RECEIVE_BYTES = 256 * 1024


def raw_response(
    error: GatewayError,
    request_id: str | None = None,
    server_headers: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """`error` as a whole HTTP/1.1 response that closes the connection."""
    body = orjson.dumps(error.body())
    headers = {
        **{name.decode("latin-1"): value.decode("latin-1") for name, value in server_headers},
        **error.headers,
        "content-type": "application/json",
        "content-length": str(len(body)),
        "x-request-id": request_id or new_request_id(),
        "connection": "close",
    }
    head = f"HTTP/1.1 {error.status} {_REASONS.get(error.status, 'Error')}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + "\r\n").encode("latin-1") + body


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
}


class HeadGuard:
    """Counts one head's bytes as they arrive; says when it is complete or too large."""

    def __init__(self) -> None:
        self.seen = 0
        self.line_ended = False
        self.complete = False
        self._tail = b""

    def feed(self, data: bytes | bytearray, size: int | None = None) -> GatewayError | None:
        """Account for the first `size` bytes of `data` (all of it by default): the refusal
        if the head is now too large, else None (and `complete` tells whether the head ended
        in them).

        Only the bytes that can still be head are looked at, in place: a read that carries
        a head and 256 KiB of body is searched up to the head's end, and nothing is copied.
        """
        size = len(data) if size is None else size
        if not self.line_ended:
            line_room = max(MAX_REQUEST_LINE - self.seen + 1, 0)
            newline = data.find(b"\n", 0, min(size, line_room))
            if self.seen + (newline if newline >= 0 else size) > MAX_REQUEST_LINE:
                return UriTooLong()
            self.line_ended = newline >= 0
        end = self._end_of_head(data, min(size, max(MAX_HEAD - self.seen, 0)))
        self.seen += size if end < 0 else end
        self.complete = end >= 0
        if self.seen > MAX_HEAD:
            return HeadersTooLarge()
        self._tail = (self._tail + bytes(data[max(size - 3, 0) : size]))[-3:]
        return None

    def _end_of_head(self, data: bytes | bytearray, room: int) -> int:
        """How many of `data`'s first `room` bytes are head, when it ends there; else -1."""
        if self._tail:  # the blank line may have begun in the last read
            # Only this read's bytes: past them, a shared buffer holds an earlier read's.
            joint = (self._tail + bytes(data[: min(3, room)])).find(_END_OF_HEAD)
            if joint >= 0:
                return joint + len(_END_OF_HEAD) - len(self._tail)
        found = data.find(_END_OF_HEAD, 0, room)
        return found + len(_END_OF_HEAD) if found >= 0 else -1


class BodyPieces:
    """A request body's pieces received since the app's last `receive`, in place of
    uvicorn's bytearray: `+=` keeps a reference instead of copying the piece in, and
    `bytes()` hands the piece on as it is when there is one (the usual case: the app reads
    each as it comes), joining them only when several arrived in between."""

    __slots__ = ("_pieces", "_size")

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._size = 0

    def __iadd__(self, piece: bytes) -> BodyPieces:
        self._pieces.append(piece)
        self._size += len(piece)
        return self

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        return self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)


class KeylessDoor:
    """Decides from a request's head alone whether it is refused for sending no key at all:
    a POST to an endpoint that spends quota without an Authorization header, from a peer
    that no trusted proxy header may speak for, and not refused first for its declared
    length. Anything else is left to the app."""

    def __init__(
        self,
        auth: Authenticator,
        doorstep: Doorstep,
        spending: Sequence[Spending],
        length_checks: Mapping[str, LengthCheck],
    ) -> None:
        """`length_checks`: the app's door's, by path (the config may set a bound)."""
        self._auth, self.doorstep = auth, doorstep
        self._spending = {endpoint.path.encode(): endpoint for endpoint in spending}
        self._length_checks = {path.encode(): check for path, check in length_checks.items()}

    def endpoint(self, path: bytes) -> str | None:
        """The name of the spending endpoint at `path`, if it is one."""
        spending = self._spending.get(path)
        return spending.name if spending is not None else None

    def refusal(
        self, method: str, path: bytes, headers: Sequence[tuple[bytes, bytes]], peer: str | None
    ) -> AuthenticationError | None:
        """The 401 the app would give this head, or None when only the app can decide."""
        spending = self._spending.get(path)
        if method != "POST" or spending is None or not self._auth.needs_bearer(peer):
            return None
        if any(name == b"authorization" for name, _ in headers):
            return None
        length = next((value for name, value in headers if name == b"content-length"), None)
        try:
            self._length_checks[path](length.decode("latin-1") if length is not None else None)
        except GatewayError:
            return None  # the app refuses this for its length before it looks at the key
        return missing_key()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with `HeadGuard` and the head timeout in front of its parser."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard: HeadGuard | None = HeadGuard()  # None while a body is being parsed
        self._head_timer: asyncio.TimerHandle | None = None
        self._at_door = False  # a request of this connection was refused by `KeylessDoor`
        self._drain_left = 0  # how much more of its body may be read before closing
        self._drain_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._end_drain()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.received(data, len(data), data)

    def received(self, data: bytes | bytearray, size: int, read: bytes | memoryview) -> None:
        """A read: the first `size` bytes of `data`, which are `read` (a view of them)."""
        if self._guard is not None:
            refusal = self._guard.feed(data, size)
            if refusal is not None:
                self._refuse(refusal)
                return
            if self._guard.complete:
                self._guard = None
                self._disarm()
            else:
                self._arm()
        super().data_received(read)  # type: ignore[arg-type]  # httptools reads any buffer

    def on_headers_complete(self) -> None:
        self._guard = None  # the rest of this message is body: uncounted
        self._disarm()
        if self._at_door:
            return  # a request after the refused one, in the same read: nobody serves it
        if not self._refused_at_door():
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._at_door:
            if not isinstance(self.cycle.body, BodyPieces):  # new, or reset by the last receive
                self.cycle.body = BodyPieces()  # type: ignore[assignment]
            super().on_body(body)
            return
        self._drain_left -= len(body)
        if self._drain_left < 0:
            self._close_door()

    def on_message_complete(self) -> None:
        if self._at_door:
            self._close_door()  # the refused body drained: the caller has read the 401
            return
        super().on_message_complete()
        self._guard = HeadGuard()  # whatever comes next is the next head

    def send_400_response(self, msg: str) -> None:
        self._refuse(InvalidRequest("Invalid HTTP request received.", code="invalid_request"))

    def _arm(self) -> None:
        if self._head_timer is None:
            seconds = float(self.app_state.get(HEAD_SECONDS_STATE, HEAD_SECONDS))
            self._head_timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        if self._guard is not None and self._guard.seen == 0:
            self.transport.close()  # nothing sent at all: nobody to answer
            return
        self._refuse(RequestTimeout("The request headers were not received in time."))

    def _refused_at_door(self) -> bool:
        """Answer the request whose head just ended if `KeylessDoor` refuses it outright."""
        door: KeylessDoor | None = self.app_state.get(DOOR_STATE)
        if door is None or (self.cycle is not None and not self.cycle.response_complete):
            return False  # no door, or pipelined behind a running request: for the app
        started = time.perf_counter()
        method = self.parser.get_method().decode("ascii")
        path = self.url.partition(b"?")[0]
        error = door.refusal(method, path, self.headers, self.client[0] if self.client else None)
        if error is None:
            return False
        self._at_door = True
        request_id = new_request_id()
        self.transport.write(raw_response(error, request_id, self.server_state.default_headers))
        self._drain_or_close(door)
        fields = {"outcome": error.outcome, "error": error.code}
        seconds = time.perf_counter() - started
        endpoint = door.endpoint(path)
        record_request(
            method, path.decode("latin-1"), request_id, error.status, fields, seconds, endpoint
        )
        return True

    def _drain_or_close(self, door: KeylessDoor) -> None:
        headers = dict(self.headers)
        length, expect = headers.get(b"content-length"), headers.get(b"expect")
        doorstep = door.doorstep
        if not doorstep.start_drain(
            length.decode("latin-1") if length else None,
            expect.decode("latin-1") if expect else None,
        ):
            self.transport.close()
            return
        self._drain_left = doorstep.max_bytes
        self._drain_timer = self.loop.call_later(doorstep.seconds, self._close_door)

    def _close_door(self) -> None:
        self._end_drain()
        self.transport.close()

    def _end_drain(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
            door: KeylessDoor = self.app_state[DOOR_STATE]
            door.doorstep.draining -= 1

    def _refuse(self, error: GatewayError) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(raw_response(error))
            self.transport.close()


class _ReceiveBuffer(threading.local):
    """The one buffer the connections of a thread's event loop read into (`recv_into`).

    Each read is parsed at once, before the next can arrive, and the parser keeps copies of
    what it needs, never the buffer: so one buffer serves every connection, and a
    connection, idle or busy, holds no read buffer of its own.
    """

    def __init__(self) -> None:
        self.array = bytearray(RECEIVE_BYTES)
        self.view = memoryview(self.array)


_receive = _ReceiveBuffer()


class ReceivingProtocol(asyncio.BufferedProtocol):
    """What the server runs on each connection: `GuardedHttpToolsProtocol`, reading into
    `_ReceiveBuffer` where uvicorn's protocol is given every read as new bytes (one copy of
    every upload less).

    A wrapper, not a subclass: an event loop hands a protocol that is also an
    `asyncio.Protocol` its reads as bytes (uvloop does), and uvicorn's is one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.http = GuardedHttpToolsProtocol(*args, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.http.connection_made(transport)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.http.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.http.eof_received()  # type: ignore[func-returns-value]

    def pause_writing(self) -> None:
        self.http.pause_writing()

    def resume_writing(self) -> None:
        self.http.resume_writing()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _receive.view

    def buffer_updated(self, nbytes: int) -> None:
        self.http.received(_receive.array, nbytes, _receive.view[:nbytes])
