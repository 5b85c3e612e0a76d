"""The upstream client's aiohttp transport, seen through httpx as the upstream module uses it."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import weakref
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
import pytest
from support.fake_upstream import FakeUpstream, Reply

from gateway.upstream.transport import AiohttpTransport, _translate

LIMITS = httpx.Limits(max_connections=8, max_keepalive_connections=8)


async def _post(url: str, **kwargs: object) -> httpx.Response:
    transport = AiohttpTransport(LIMITS, proxies={})
    async with httpx.AsyncClient(transport=transport, timeout=5) as client:
        return await client.post(url, **kwargs)  # type: ignore[arg-type]


def test_answer_status_headers_and_body_come_through(upstream: FakeUpstream) -> None:
    """Status, headers and body of the upstream's answer reach httpx unchanged."""
    upstream.reply(Reply(418, b'{"error": "teapot"}', {"x-extra": "1"}))
    response = asyncio.run(_post(upstream.url + "/images/variations", content=b"x"))
    assert response.status_code == 418
    assert response.headers["x-extra"] == "1"
    assert response.content == b'{"error": "teapot"}'


def test_streamed_body_with_a_length_is_sent_whole(upstream: FakeUpstream) -> None:
    """A streamed request body with an explicit Content-Length is sent as is, not chunked."""

    body = (b"--b\r\n", b'Content-Disposition: form-data; name="n"\r\n\r\n2\r\n', b"--b--\r\n")

    async def parts() -> AsyncIterator[bytes]:
        for part in body:
            yield part

    length = str(sum(map(len, body)))
    headers = {"content-type": "multipart/form-data; boundary=b", "content-length": length}
    response = asyncio.run(_post(upstream.url + "/x", content=parts(), headers=headers))
    assert response.status_code == 200
    (received,) = upstream.received
    assert received.fields == {"n": "2"}
    assert "transfer-encoding" not in received.headers


@pytest.fixture
def hang_up_server() -> Iterator[str]:
    """A server that reads the request, then closes the connection without answering."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_a_hang_up_before_the_answer_is_an_httpx_error(hang_up_server: str) -> None:
    """The upstream closing the connection unanswered raises httpx's own error, not aiohttp's."""
    with pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(_post(hang_up_server, content=b"x"))


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError(), httpx.ReadTimeout),
        (TimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut"), httpx.ReadError),
    ],
)
def test_aiohttp_failures_become_the_matching_httpx_ones(
    raised: BaseException, expected: type[httpx.TransportError]
) -> None:
    """Timeouts stay timeouts of the same phase (the gateway answers 504 vs 502 by them)."""
    assert type(_translate(raised)) is expected


def test_environment_proxy_is_used_except_for_no_proxy_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP(S)_PROXY applies to the upstream's origin unless NO_PROXY lists its host."""
    monkeypatch.setenv("no_proxy", "internal.example")
    transport = AiohttpTransport(LIMITS, proxies={"https": "http://proxy.example:3128"})
    assert transport._proxy("https", "api.openai.com") == "http://proxy.example:3128"
    assert transport._proxy("https", "internal.example") is None
    assert transport._proxy("http", "api.openai.com") is None


def test_a_read_answer_lets_go_of_its_request_without_the_garbage_collector(
    upstream: FakeUpstream,
) -> None:
    """Once read, the answer no longer keeps the request, and its body, alive: a multi-MB
    upload must not wait for a garbage collection to be freed."""

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"x"

    async def scenario() -> weakref.ref[Body]:
        body = Body()
        alive = weakref.ref(body)
        async with httpx.AsyncClient(transport=AiohttpTransport(LIMITS, proxies={})) as client:
            request = client.build_request(
                "POST", upstream.url + "/x", content=body, headers={"content-length": "1"}
            )
            response = await client.send(request)
            assert response.status_code == 200
            del request, response, body
        return alive

    gc.collect()
    gc.disable()
    try:
        assert asyncio.run(scenario())() is None
    finally:
        gc.enable()
