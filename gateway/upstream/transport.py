"""The upstream client's transport: httpx's API over aiohttp's connection pool.

httpx's own pool (httpcore) looks at every pooled connection on every request it queues or
finishes, so its cost per request grows with the number of open connections: with 128
requests in flight against a 200 ms upstream, one worker managed 24 requests a second
(encode/httpx#3215, encode/httpcore#1035; numbers in bench/README.md, issue 8). aiohttp
hands out a pooled connection in constant time. The gateway still talks to
`httpx.AsyncClient` (tests swap this transport for their own); only the wire is aiohttp's.

Semantics kept from httpx's default transport: its timeouts (`connect` for the TCP and TLS
handshake, `pool` for waiting on a free connection, `read` between bytes of the answer),
its certificate store (certifi, or `SSL_CERT_FILE`), an HTTP proxy from the environment
(`HTTP(S)_PROXY`, `NO_PROXY`, read once when the transport is built, as httpx does; aiohttp's
own `trust_env` would look them up in a thread on every request), no redirects, no
decompression and no cookie jar of its own (httpx does both). aiohttp's exceptions become
httpx's.
"""

from __future__ import annotations

import functools
import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType

import aiohttp
import httpx
from yarl import URL


class _Body(httpx.AsyncByteStream):
    """An aiohttp answer's body as httpx reads it; closing it releases the connection."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.answer: httpx.Response | None = None  # the httpx answer this is the body of

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc) from exc

    async def aclose(self) -> None:
        self._response.release()
        answer, self.answer = self.answer, None
        if answer is not None:
            # httpx binds an answer and its stream to each other (Response.stream is a
            # BoundAsyncStream holding the Response): a cycle that only the garbage collector
            # frees, and with it the request and its multi-MB body, often long after (once
            # they have reached the oldest generation). A closed answer reads no more: cut it.
            answer.stream = _CLOSED


def _translate(exc: BaseException) -> httpx.TransportError:
    """The httpx exception that tells the same story as an aiohttp (or timeout) one."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, TimeoutError):  # aiohttp's sock_read timeout, among others
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message)
    return httpx.ReadError(message)


@functools.lru_cache(maxsize=16)  # one per distinct timeout configuration
def _timeout(
    pool: float | None, connect: float | None, read: float | None
) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, connect=pool, sock_connect=connect, sock_read=read)


async def _stream(request: httpx.Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream:  # type: ignore[union-attr]
        yield chunk


async def byte_stream(
    *parts: bytes, then: Callable[[], None] | None = None
) -> AsyncIterator[bytes]:
    """`parts`, one after the other, as a request body httpx streams (no joined copy).

    `then` is called when the transport asks for the last part: it has written all the
    others (to the socket, or to its buffer of at most a flow-control window), which are
    let go of first. Not after the last part: a transport that knows the length stops
    asking once it has it.
    """
    *first, last = parts or (b"",)
    parts = ()
    while first:
        yield first.pop(0)  # held by the transport alone once written
    if then is not None:
        then()
    yield last


_CLOSED = httpx.ByteStream(b"")
# aiohttp warns about bytes bodies over 1 MiB ("might lock the event loop"): the transport
# writes them without blocking all the same, but as a one-chunk stream, sized by the
# Content-Length header httpx set, they go through without the warning.
_LARGE_BODY = 2**20
_MAX_TARGETS = 64


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An `httpx.AsyncBaseTransport` sending over one `aiohttp.ClientSession`.

    The session is opened with the client (`async with httpx.AsyncClient(transport=...)`),
    inside the running event loop, and closed with it.
    """

    def __init__(
        self,
        limits: httpx.Limits,
        ssl_context: ssl.SSLContext | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self._limits = limits
        self._ssl = ssl_context or httpx.create_ssl_context()
        self._proxies = dict(urllib.request.getproxies() if proxies is None else proxies)
        self._targets: dict[str, tuple[URL, str | None]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AiohttpTransport:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
            )
        return self._session

    def _proxy(self, scheme: str, host: str) -> str | None:
        """The proxy for `scheme://host` (None: direct)."""
        if not self._proxies or urllib.request.proxy_bypass(host):  # NO_PROXY
            return None
        return self._proxies.get(scheme) or self._proxies.get("all")

    def _target(self, url: httpx.URL) -> tuple[URL, str | None]:
        """`url` for aiohttp, and its proxy: worked out once per URL (the gateway uses one)."""
        key = str(url)
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            target = (URL(key, encoded=True), self._proxy(url.scheme, url.host))
            self._targets[key] = target
        return target

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request`; raises an `httpx.TransportError` subclass when it fails."""
        session = self._open()
        try:
            data: bytes | AsyncIterator[bytes] = request.content
            if len(request.content) > _LARGE_BODY:
                data = byte_stream(request.content)
        except httpx.RequestNotRead:
            # aiohttp frames it: by the caller's Content-Length if set, else chunked.
            request.headers.pop("transfer-encoding", None)
            data = _stream(request)
        url, proxy = self._target(request.url)
        timeout = request.extensions.get("timeout", {})
        try:
            response = await session.request(
                request.method,
                url,
                headers=request.headers.multi_items(),
                data=data,
                allow_redirects=False,
                timeout=_timeout(timeout.get("pool"), timeout.get("connect"), timeout.get("read")),
                proxy=proxy,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc) from exc
        body = _Body(response)
        body.answer = httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=body,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode(),
            },
        )
        return body.answer

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
