"""Callers that misbehave or crowd in: concurrent SDK-like clients that keep sending, and raw
sockets that hang up, trickle or stall, for the fault and abuse tests.

Every answer a caller receives goes into a `Tally` (support/ledger.py), so that a test can
compare what callers got with what the quota store charged.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import httpx

from support.config import KEYS, auth
from support.ledger import Seen, Tally, seen_from

PATH = "/v1/images/variations"

# The values the openai SDK's create_variation accepts, as it types them.
SdkSize = Literal["256x256", "512x512", "1024x1024"]
SdkFormat = Literal["url", "b64_json"]


def multipart(png: bytes, **fields: str) -> tuple[bytes, str]:
    """A variations body as an SDK writes it, and its Content-Type: the gateway's own
    upstream framing around the image, joined."""
    from gateway.upstream.client import multipart_frame

    head, tail, content_type = multipart_frame(fields, "image")
    return b"".join((head, png, tail)), content_type


async def post(
    client: httpx.AsyncClient,
    base_url: str,
    tally: Tally,
    png: bytes,
    *,
    user: str = "alice",
    size: str = "256x256",
    **fields: str,
) -> Seen:
    """One variations request; its answer (or status 0 on a transport error) is tallied."""
    try:
        response = await client.post(
            base_url + PATH,
            headers=auth(user),
            files={"image": ("image.png", png, "application/octet-stream")},
            data={"size": size, **fields},
        )
    except httpx.TransportError as exc:
        return tally.add(Seen(user, size, 0, code=type(exc).__name__))
    return tally.add(
        seen_from(user, size, response.status_code, response.headers, response.content)
    )


class Call(NamedTuple):
    """One request of a crowd: when it was sent and answered, what it asked and got."""

    sent: float
    answered: float
    seen: Seen
    image: int  # index into the crowd's images
    n: int


@dataclass
class Crowd:
    """`clients` callers sending one request after another until `stop` is set.

    Each answer is tallied with the monotonic times its request was sent and answered, so
    a test can tell what happened before, during and after a fault.
    """

    base_url: str
    images: Sequence[bytes]
    clients: int = 16
    users: Sequence[str] = ("alice", "bob", "carol")
    sizes: Sequence[str] = ("256x256", "512x512", "1024x1024")
    max_n: int = 3
    seed: int = 0
    tally: Tally = field(default_factory=Tally)
    timeline: list[Call] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> Tally:
        limits = httpx.Limits(max_connections=self.clients)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            await asyncio.gather(*(self._caller(client, i, stop) for i in range(self.clients)))
        return self.tally

    async def _caller(self, client: httpx.AsyncClient, index: int, stop: asyncio.Event) -> None:
        rng = random.Random(self.seed * 1000 + index)
        while not stop.is_set():
            sent = time.monotonic()
            image, n = rng.randrange(len(self.images)), rng.randint(1, self.max_n)
            seen = await post(
                client,
                self.base_url,
                self.tally,
                self.images[image],
                user=rng.choice(self.users),
                size=rng.choice(self.sizes),
                n=str(n),
            )
            self.timeline.append(Call(sent, time.monotonic(), seen, image, n))
            if seen.status == 0:
                await asyncio.sleep(0.01)  # no answer at all: do not spin


async def during(crowd: Crowd, scenario: Callable[[], object]) -> Tally:
    """Run `crowd` while `scenario` (a blocking function, run in a thread) plays a fault."""
    stop = asyncio.Event()
    running = asyncio.ensure_future(crowd.run(stop))
    try:
        await asyncio.to_thread(scenario)
    finally:
        stop.set()
    return await running


# Raw sockets: what no SDK would do.


def raw_head(
    port: int, *, length: int | None, content_type: str, user: str = "alice", path: str = PATH
) -> bytes:
    """A variations (or `path`) request head with a Content-Length, or chunked when `length`
    is None."""
    framing = b"Transfer-Encoding: chunked" if length is None else b"Content-Length: %d" % length
    return (
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port
        + b"Authorization: Bearer " + KEYS[user].encode() + b"\r\n"
        + b"Content-Type: " + content_type.encode() + b"\r\n"
        + framing + b"\r\n\r\n"
    )  # fmt: skip


def open_raw(port: int, head: bytes, timeout: float = 10) -> socket.socket:
    """A connection to the gateway on which `head` (and maybe more) has been sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(head)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes or a JSON body is complete."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and data.endswith(b"}"):
                break
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer (0 if there was none)."""
    if not answer.startswith(b"HTTP/1.1 "):
        return 0
    return int(answer[9:12])
