"""The slow cell's callers: C requests sent at the same moment, one per connection, each
uploading its own image, half with a Content-Length (as the python and Go SDKs send) and
half chunked (as the node SDK sends a file stream).

wrk cannot do this: it keeps a fixed number of connections busy and sends one body with
one framing. Here every caller opens its connection, sends its whole request and reads its
answer once; the run is over when the last one has its answer (or gave up after
`timeout_s`). Every body is the cell's body with one more PNG chunk after IHDR naming the
caller (as `with_unique_chunk`), sent as three writes that share the image bytes, so a
thousand 1 MB callers do not take a gigabyte of the bench's own memory.

`Flood` is the flood cell's background: connections without a key, as many as asked,
knocking again as soon as they are refused.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter

from bench.images import unique_chunk, unique_parts
from bench.wrk import WrkResult


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, str | None]:
    """The status and x-gateway-cache of one HTTP/1.1 answer with a Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = (line.split(": ", 1) for line in lines[1:] if ": " in line)
    headers = {name.lower(): value for name, value in fields}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("x-gateway-cache")


def _framed(parts: tuple[bytes, ...], chunked: bool) -> list[bytes]:
    if not chunked:
        return list(parts)
    framed = []
    for part in parts:
        framed += [b"%x\r\n" % len(part), part, b"\r\n"]
    return [*framed, b"0\r\n\r\n"]


class Crowd:
    """C callers of one cell: where they send, and what."""

    def __init__(self, port: int, path: str, headers: dict[str, str], body: bytes) -> None:
        self.port, self.path, self.headers = port, path, headers
        self._before, _, self._after = unique_parts(body, "")  # cut once, shared by all

    def _request(self, index: int) -> list[bytes]:
        parts = (self._before, unique_chunk(f"crowd-{index}"), self._after)
        chunked = index % 2 == 1
        framing = (
            "transfer-encoding: chunked"
            if chunked
            else f"content-length: {sum(len(part) for part in parts)}"
        )
        fields = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        head = (
            f"POST {self.path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n{fields}{framing}\r\n\r\n"
        )
        return [head.encode(), *_framed(parts, chunked)]

    async def _call(self, index: int, timeout_s: float) -> tuple[int, float, str | None, str]:
        """(status, seconds, x-gateway-cache, error); status 0 when the call failed."""
        started = time.perf_counter()
        writer = None
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2**20)
                writer.writelines(self._request(index))
                await writer.drain()
                status, cache = await _read_answer(reader)
            return status, time.perf_counter() - started, cache, ""
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            return 0, time.perf_counter() - started, None, type(exc).__name__
        finally:
            if writer is not None:
                writer.close()

    async def run(self, count: int, timeout_s: float) -> WrkResult:
        """Send `count` requests at once; the answers as a wrk-shaped result (duration: the
        wall time from the first send to the last answer)."""
        started = time.perf_counter()
        calls = await asyncio.gather(*(self._call(i, timeout_s) for i in range(count)))
        wall = time.perf_counter() - started
        latencies = sorted(seconds * 1000 for status, seconds, _, _ in calls if status)
        return WrkResult(
            requests=len(calls),
            duration_s=wall,
            p50_ms=_percentile(latencies, 0.50),
            p99_ms=_percentile(latencies, 0.99),
            statuses=dict(Counter(status for status, _, _, _ in calls if status)),
            socket_errors=dict(Counter(error for _, _, _, error in calls if error)),
            cache=dict(Counter(cache for _, _, cache, _ in calls if cache)),
        )


def _percentile(sorted_ms: list[float], fraction: float) -> float:
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, int(fraction * len(sorted_ms)))]


class Flood:
    """`with Flood(port, path, connections):` keeps that many connections at the gateway,
    each announcing a 4 MB upload without a key, sending none of it, reading the refusal and
    coming back `PAUSE_S` later, from a thread of its own, for the block."""

    PAUSE_S = 1.0  # about `connections` refusals a second: a flood, not the harness's limit

    def __init__(self, port: int, path: str, connections: int) -> None:
        self.port, self.connections, self.refused = port, connections, 0
        self._head = (
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            "content-type: multipart/form-data; boundary=x\r\ncontent-length: 4000000\r\n\r\n"
        ).encode()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    async def _run(self) -> None:
        await asyncio.gather(*(self._knock() for _ in range(self.connections)))

    async def _knock(self) -> None:
        await asyncio.sleep(random.uniform(0, self.PAUSE_S))  # spread out, not in lockstep
        while not self._stop.is_set():
            writer = None
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(self._head)
                await asyncio.wait_for(reader.read(65536), 10)
                self.refused += 1
            except (OSError, TimeoutError):
                pass
            finally:
                if writer is not None:
                    writer.close()
            await asyncio.sleep(self.PAUSE_S)
