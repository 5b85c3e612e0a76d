"""The server's connections read into one buffer per event loop (`ReceivingProtocol`): the
event loop really reads into it, and what the app receives is never the buffer itself,
whatever other connections read into it in between."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from typing import Any

import uvicorn
import uvloop
from uvicorn.server import ServerState

from gateway.server.protocol import ReceivingProtocol

BODY_BYTES = 700_000  # several reads of the shared buffer (256 KiB)


async def digest_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers each request with the SHA-256 of its body, and keeps every body piece it was
    handed until the end, so a piece that is a view of a reused buffer would be caught."""
    pieces: list[bytes] = []
    while True:
        message = await receive()
        pieces.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = hashlib.sha256(b"".join(pieces)).hexdigest().encode()
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class CountingProtocol(ReceivingProtocol):
    reads = 0

    def buffer_updated(self, nbytes: int) -> None:
        CountingProtocol.reads += 1
        super().buffer_updated(nbytes)


def _head(length: int) -> bytes:
    return b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length


async def _answer(reader: asyncio.StreamReader) -> bytes:
    await reader.readuntil(b"\r\n\r\n")
    return await reader.read(64)


async def _interleaved(port: int) -> tuple[list[bytes], list[bytes]]:
    """Two connections uploading at once, each in several writes, one after the other's
    halves; then a second request on the first connection (keep-alive)."""
    bodies = [secrets.token_bytes(BODY_BYTES) for _ in range(3)]
    (r1, w1), (r2, w2) = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    half = BODY_BYTES // 2
    w1.write(_head(BODY_BYTES) + bodies[0][:half])
    await w1.drain()
    await asyncio.sleep(0.05)
    w2.write(_head(BODY_BYTES) + bodies[1])
    await w2.drain()
    await asyncio.sleep(0.05)
    w1.write(bodies[0][half:])
    answers = [await _answer(r1), await _answer(r2)]
    w1.write(_head(BODY_BYTES) + bodies[2])
    answers.append(await _answer(r1))
    for writer in (w1, w2):
        writer.close()
    return [hashlib.sha256(body).hexdigest().encode() for body in bodies], answers


def test_uploads_read_through_the_shared_buffer_arrive_intact() -> None:
    async def main() -> tuple[list[bytes], list[bytes]]:
        config = uvicorn.Config(digest_app, lifespan="off", log_config=None)
        config.load()
        factory = functools.partial(
            CountingProtocol, config=config, server_state=ServerState(), app_state={}
        )
        server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
        try:
            return await _interleaved(server.sockets[0].getsockname()[1])
        finally:
            server.close()

    expected, answers = uvloop.run(main())
    assert answers == expected
    assert CountingProtocol.reads >= 3  # the loop read into the buffer (uvloop's buffered path)


def test_the_event_loop_sees_a_buffered_protocol_only() -> None:
    """uvloop hands a protocol that is also an `asyncio.Protocol` its reads as new bytes."""
    assert issubclass(ReceivingProtocol, asyncio.BufferedProtocol)
    assert not issubclass(ReceivingProtocol, asyncio.Protocol)
