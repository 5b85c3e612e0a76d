"""Capacity and admission against a slow upstream, through one real gateway process with
default limits: every honest caller is served while hundreds wait on the upstream at once,
and callers without a key, or without quota, hold nothing that others need."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import psutil
import pytest
from support.callers import multipart, open_raw, raw_head, read_answer, status_of
from support.config import ENV, auth, base_config
from support.fake_upstream import FakeUpstream, Received, Reply, images_response
from support.memory import MiB
from support.pngs import make_png, png_of_about
from support.servers import GatewayProcess

pytestmark = pytest.mark.e2e
PATH = "/v1/images/variations"
CROWD = 300  # over the old in-flight limit (256)
USERS = ("alice", "bob", "carol", "grafana")
BARRIER_SECONDS = 90.0  # a bound for the crowd to gather, only reached when the test fails


class WaitForAll:
    """An upstream script that answers nobody until `parties` requests wait on it at once;
    if they are not all there within `BARRIER_SECONDS`, every one gets a 500 (the test
    fails, it never hangs). `at_full` runs once, when the last one arrives."""

    def __init__(self, parties: int, at_full: Callable[[], None]) -> None:
        self._barrier = threading.Barrier(parties, action=at_full, timeout=BARRIER_SECONDS)

    def __call__(self, received: Received) -> Reply:
        try:
            self._barrier.wait()
        except threading.BrokenBarrierError:
            return Reply(status=500, body={"error": {"message": "the crowd never gathered"}})
        return Reply(body=images_response(received))


@pytest.fixture
def slow_upstream() -> Iterator[FakeUpstream]:
    """The fake upstream, without decoding what it receives (hundreds of uploads)."""
    with FakeUpstream(parse=False) as fake:
        yield fake


def _slow_config(upstream_url: str) -> dict[str, Any]:
    """The test config with an upstream timeout long enough for the crowd to gather."""
    config = base_config(upstream_url)
    config["upstream"]["timeout_seconds"] = BARRIER_SECONDS + 30
    return config


async def _chunked(body: bytes) -> AsyncIterator[bytes]:
    """`body` streamed without a length, as the node SDK sends a file stream."""
    for start in range(0, len(body), 16384):
        yield body[start : start + 16384]


async def _call(client: httpx.AsyncClient, url: str, index: int) -> int:
    """One caller: a distinct PNG, with a Content-Length (even) or chunked (odd)."""
    body, content_type = multipart(make_png(16 + index % 200, noise=True), size="256x256")
    content: bytes | AsyncIterator[bytes] = body if index % 2 == 0 else _chunked(body)
    headers = {**auth(USERS[index % len(USERS)]), "content-type": content_type}
    response = await client.post(url + PATH, content=content, headers=headers)
    return response.status_code


async def _crowd(url: str, count: int) -> list[int]:
    limits = httpx.Limits(max_connections=count)
    timeout = httpx.Timeout(BARRIER_SECONDS + 60)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        return list(await asyncio.gather(*(_call(client, url, i) for i in range(count))))


def test_hundreds_waiting_on_the_upstream_at_once_are_all_served(
    start_gateway: Callable[..., GatewayProcess],
    slow_upstream: FakeUpstream,
    measured: Callable[[str], None],
) -> None:
    """300 callers at once, half of them chunked, through one process with default limits:
    all 300 are at the upstream together (it answers nobody before), and all get 200."""
    gateway = start_gateway(_slow_config(slow_upstream.url), ENV)
    assert gateway.proc is not None
    process = psutil.Process(gateway.proc.pid)
    base = process.memory_info().rss
    at_full: list[int] = []
    slow_upstream.script = WaitForAll(CROWD, lambda: at_full.append(process.memory_info().rss))
    statuses = asyncio.run(_crowd(gateway.url, CROWD))
    assert statuses == [200] * CROWD
    assert len(slow_upstream.received) == CROWD
    per_request = (at_full[0] - base) / CROWD
    measured(
        f"{CROWD} requests waiting on the upstream at once (half chunked): RSS "
        f"{at_full[0] / MiB:.0f} MiB (base {base / MiB:.0f}), "
        f"{per_request / 1024:.0f} KiB per request waiting"
    )


def _keyless_head(port: int, length: int) -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (PATH.encode(), port)
        + b"Content-Type: multipart/form-data; boundary=x\r\n"
        + b"Content-Length: %d\r\n\r\n" % length
    )


def _closed(sock: socket.socket) -> bool:
    """Whether the server has closed the connection (EOF or reset)."""
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return True


def test_a_flood_of_keyless_uploads_holds_nothing(
    start_gateway: Callable[..., GatewayProcess], slow_upstream: FakeUpstream
) -> None:
    """300 connections announcing a 4 MB upload without a key, and sending none of it, are
    each answered 401 at once and closed; a valid caller meanwhile is served."""
    gateway = start_gateway(_slow_config(slow_upstream.url), ENV)
    socks = [open_raw(gateway.port, _keyless_head(gateway.port, 4_000_000)) for _ in range(300)]
    try:
        answers = [read_answer(sock) for sock in socks]
        assert {status_of(answer) for answer in answers} == {401}
        assert all(b"connection: close" in answer.lower() for answer in answers)
        assert all(_closed(sock) for sock in socks)
        response = gateway.post_variation(make_png(32))
        assert response.status_code == 200
    finally:
        for sock in socks:
            sock.close()


def test_a_small_keyless_upload_is_drained_so_its_caller_reads_the_401(
    start_gateway: Callable[..., GatewayProcess], slow_upstream: FakeUpstream
) -> None:
    """An SDK that sends a small image without a valid key reads the 401, not a reset
    connection: small bodies are drained (within bounds) before the refusal."""
    gateway = start_gateway(_slow_config(slow_upstream.url), ENV)
    body, content_type = multipart(make_png(32))
    response = httpx.post(
        gateway.url + PATH,
        content=body,
        headers={"authorization": "Bearer nope", "content-type": content_type},
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert slow_upstream.received == []


def test_half_sent_heads_are_answered_and_closed_at_the_header_timeout(
    start_gateway: Callable[..., GatewayProcess], slow_upstream: FakeUpstream
) -> None:
    """Connections that send half a request head, or nothing, do not hold their sockets:
    after limits.header_timeout_seconds the first get a 400 request_timeout and both are
    closed."""
    config = {**_slow_config(slow_upstream.url), "limits": {"header_timeout_seconds": 1}}
    gateway = start_gateway(config, ENV)
    half = [open_raw(gateway.port, b"POST /v1/images/variations HTTP/1.1\r\nHost: x\r\n")]
    half += [open_raw(gateway.port, b"") for _ in range(3)]
    try:
        answer = read_answer(half[0])
        assert status_of(answer) == 400 and b'"request_timeout"' in answer
        assert all(_closed(sock) for sock in half)
    finally:
        for sock in half:
            sock.close()


@pytest.mark.parametrize(
    ("head", "status", "code"),
    [
        (b"POST /v1/images/variations HTTP/1.1\r\nX-Big: " + b"a" * 200_000, 431,
         "request_header_fields_too_large"),
        (b"GET /healthz?" + b"q" * 20_000, 414, "uri_too_long"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "invalid_request"),
    ],
)  # fmt: skip
def test_oversized_or_broken_heads_are_refused_in_openai_shape(
    start_gateway: Callable[..., GatewayProcess],
    slow_upstream: FakeUpstream,
    head: bytes,
    status: int,
    code: str,
) -> None:
    """A head too large or a URL too long is refused before the parser buffers it (431,
    414), and an unparsable one gets a 400, each as OpenAI-shaped JSON, then closed; the
    gateway's memory does not grow by the size sent."""
    gateway = start_gateway(_slow_config(slow_upstream.url), ENV)
    assert gateway.proc is not None
    before = psutil.Process(gateway.proc.pid).memory_info().rss
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)  # may be refused while still sending
        answer = read_answer(sock)
    finally:
        sock.close()
    assert status_of(answer) == status
    assert b"content-type: application/json" in answer.lower()
    assert b'"code":"%s"' % code.encode() in answer
    grown = psutil.Process(gateway.proc.pid).memory_info().rss - before
    assert grown < 8 * MiB
    assert httpx.get(gateway.url + "/healthz", timeout=5).status_code == 200


def test_trickling_uploads_of_a_caller_out_of_quota_do_not_hold_back_others(
    start_gateway: Callable[..., GatewayProcess], slow_upstream: FakeUpstream
) -> None:
    """20 chunked uploads from a caller whose images are spent, each trickling a few bytes,
    leave room for another caller's 3.6 MB upload, served at once."""
    no_images = [{"unit": "images", "limit": 0, "window": "day"}]
    config = {
        **_slow_config(slow_upstream.url),
        "quotas": {"default": [], "users": {"bob": no_images}},
    }
    gateway = start_gateway(config, ENV)
    content_type = "multipart/form-data; boundary=x"
    head = raw_head(gateway.port, length=None, content_type=content_type, user="bob")
    trickles = [open_raw(gateway.port, head + b"1\r\n-\r\n") for _ in range(20)]
    try:
        body, content_type = multipart(png_of_about(3_600_000))
        response = httpx.post(
            gateway.url + PATH,
            content=body,
            headers={**auth("alice"), "content-type": content_type},
            timeout=20,
        )
        assert response.status_code == 200
    finally:
        for sock in trickles:
            sock.close()


def test_a_caller_out_of_requests_is_refused_before_its_upload_is_read(
    start_gateway: Callable[..., GatewayProcess], slow_upstream: FakeUpstream
) -> None:
    """Once a caller has been refused for quota, its next upload is refused at the door with
    the connection closed: its 4 MB body is never read."""
    config = {
        **_slow_config(slow_upstream.url),
        "quotas": {"default": [{"unit": "requests", "limit": 1, "window": "day"}]},
    }
    gateway = start_gateway(config, ENV)
    assert gateway.post_variation(make_png(32)).status_code == 200
    assert gateway.post_variation(make_png(32)).status_code == 429  # read, then refused
    head = raw_head(gateway.port, length=4_000_000, content_type="multipart/form-data; boundary=x")
    sock = open_raw(gateway.port, head)
    try:
        answer = read_answer(sock)
        assert status_of(answer) == 429 and b"connection: close" in answer.lower()
        assert _closed(sock)
    finally:
        sock.close()
    assert len(slow_upstream.received) == 1
