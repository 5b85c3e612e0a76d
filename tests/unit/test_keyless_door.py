"""Requests without any key are refused by the server's protocol, before the app: the same
OpenAI-shaped 401 with an `x-request-id`, `Connection: close`, an access-log line and a
count, at a fraction of a pass through Starlette; anything the door cannot decide from the
head goes to the app."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import pytest
import uvicorn
from prometheus_client import REGISTRY
from support.config import ENV, base_config
from uvicorn.server import ServerState

from gateway.app import SPENDING
from gateway.auth.authenticator import Authenticator
from gateway.auth.keys import ConfigKeys
from gateway.auth.proxy_headers import TrustedHeaders
from gateway.door import Doorstep, length_checks
from gateway.server.protocol import DOOR_STATE, GuardedHttpToolsProtocol, KeylessDoor
from gateway.settings.build import build_settings
from gateway.settings.config import parse_config
from gateway.settings.identity import TrustedHeaderConfig

PATH = b"/v1/images/variations"
PEER = "192.168.1.7"  # not a trusted proxy
PROXY = "10.1.1.1"  # inside the trusted proxies' network
SETTINGS = build_settings(parse_config(base_config("http://upstream.invalid/v1")), ENV)


class Transport(asyncio.Transport):
    """What the protocol writes and whether it closed, from a peer at `peer`."""

    def __init__(self, peer: str) -> None:
        super().__init__()
        self.peer, self.written, self.closed = peer, bytearray(), False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": (self.peer, 40000), "sockname": ("127.0.0.1", 8080)}.get(name)


class Sent(NamedTuple):
    """What the server had written, and whether it had closed, when the scenario ended."""

    written: bytes
    closed: bool


class SpyApp:
    """An ASGI app that records every request reaching it and never answers."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await asyncio.Event().wait()


def _door(doorstep: Doorstep | None = None) -> KeylessDoor:
    """The door of the route table's spending endpoints, whose authenticator trusts identity
    headers from 10.0.0.0/8 only."""
    headers = TrustedHeaders(TrustedHeaderConfig(team_header="X-Team", proxies=("10.0.0.0/8",)))
    auth = Authenticator([headers, ConfigKeys([])])
    return KeylessDoor(auth, doorstep or Doorstep(), SPENDING, length_checks(SPENDING, SETTINGS))


Scenario = Callable[[GuardedHttpToolsProtocol, Transport], Awaitable[None]]


def _serve(door: KeylessDoor, app: SpyApp, peer: str, scenario: Scenario) -> Sent:
    """Run `scenario` against one connection of a guarded protocol in front of `app`."""

    async def main() -> Sent:
        config = uvicorn.Config(app, lifespan="off", log_config=None, proxy_headers=False)
        protocol = GuardedHttpToolsProtocol(
            config=config, server_state=ServerState(), app_state={DOOR_STATE: door}
        )
        transport = Transport(peer)
        protocol.connection_made(transport)
        try:
            await scenario(protocol, transport)
            await asyncio.sleep(0)  # let any app task start
            return Sent(bytes(transport.written), transport.closed)
        finally:
            protocol.connection_lost(None)
            for task in list(protocol.tasks):
                task.cancel()

    return asyncio.run(main())


def _feeding(*reads: bytes) -> Scenario:
    async def scenario(protocol: GuardedHttpToolsProtocol, transport: Transport) -> None:
        for data in reads:
            protocol.data_received(data)

    return scenario


def _head(*headers: bytes, method: bytes = b"POST", path: bytes = PATH) -> bytes:
    lines = [method + b" " + path + b" HTTP/1.1", b"host: gw", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _refused() -> float:
    labels = {"endpoint": "variations", "outcome": "unauthenticated"}
    return REGISTRY.get_sample_value("gateway_requests_total", labels) or 0


def test_a_keyless_upload_is_answered_401_by_the_server_without_the_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A variations POST with no Authorization header gets the app's 401 (JSON, request id,
    Connection: close), its count and its access-log line, and the app never sees it."""
    app, before = SpyApp(), _refused()
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        sent = _serve(_door(), app, PEER, _feeding(_head(b"content-length: 4000000")))
    head, _, body = sent.written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ") and sent.closed and app.paths == []
    assert b"connection: close" in head and b"content-type: application/json" in head
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_api_key" and "didn't provide an API key" in error["message"]
    assert _refused() == before + 1
    [line] = [json.loads(record.getMessage()) for record in caplog.records]
    assert b"x-request-id: " + line["request_id"].encode() in head
    assert line["status"] == 401 and line["outcome"] == "unauthenticated"
    assert line["path"] == PATH.decode() and line["error"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("head", "peer"),
    [
        (_head(b"authorization: Bearer nope", b"content-length: 10"), PEER),
        (_head(b"authorization: Basic abc", b"content-length: 10"), PEER),
        (_head(b"content-length: 10", method=b"GET"), PEER),
        (_head(b"content-length: 10", path=b"/v1/quota"), PEER),
        (_head(b"content-length: 10", path=b"/v1/images/variations/"), PEER),
        (_head(b"content-length: 99000000"), PEER),  # the app's 413 comes before the key
        (_head(b"x-forwarded-user: dave", b"x-team: vision", b"content-length: 10"), PROXY),
        (_head(b"content-length: 10"), PROXY),
    ],
)
def test_what_the_head_alone_cannot_decide_goes_to_the_app(head: bytes, peer: str) -> None:
    """A key of any kind, another route, an oversized declared body, or a peer whose identity
    headers are trusted: the app decides, and the door writes nothing."""
    app = SpyApp()
    sent = _serve(_door(), app, peer, _feeding(head))
    assert len(app.paths) == 1 and sent.written == b""


def test_a_keyless_request_pipelined_behind_a_running_one_waits_for_the_app() -> None:
    """Answers keep their order: a keyless request behind one still being served is the
    app's, not answered ahead of it."""
    app = SpyApp()
    first = _head(b"authorization: Bearer k", b"content-length: 0")
    sent = _serve(_door(), app, PEER, _feeding(first + _head(b"content-length: 0")))
    assert app.paths == [PATH.decode()] and sent.written == b"" and not sent.closed


def test_a_small_keyless_body_is_drained_before_the_connection_closes() -> None:
    """The 401 goes out at once; a small body is then read to its end (so the caller reads the
    answer, not a reset), the connection closed, and the drain given back."""
    doorstep, halves = Doorstep(), []

    async def scenario(protocol: GuardedHttpToolsProtocol, transport: Transport) -> None:
        protocol.data_received(_head(b"content-length: 100") + b"x" * 50)
        halves.append((bytes(transport.written[:12]), transport.closed, doorstep.draining))
        protocol.data_received(b"x" * 50)

    sent = _serve(_door(doorstep), SpyApp(), PEER, scenario)
    assert halves == [(b"HTTP/1.1 401", False, 1)]
    assert sent.closed and doorstep.draining == 0


@pytest.mark.parametrize(
    ("doorstep", "extra"),
    [
        (Doorstep(max_draining=0), ()),  # no drain free
        (Doorstep(), (b"expect: 100-continue",)),  # the caller sends nothing until told
    ],
)
def test_a_keyless_body_not_to_be_drained_is_closed_at_once(
    doorstep: Doorstep, extra: tuple[bytes, ...]
) -> None:
    """Past the drains allowed at once, or when the caller waits for `100 Continue`, the 401
    is followed by the close straight away."""
    head = _head(b"content-length: 100", *extra)
    sent = _serve(_door(doorstep), SpyApp(), PEER, _feeding(head))
    assert sent.written.startswith(b"HTTP/1.1 401 ") and sent.closed


def test_a_drain_that_outlasts_its_time_is_closed() -> None:
    """A small body that never arrives is waited for only the doorstep's seconds."""
    doorstep = Doorstep(seconds=0.01)

    async def scenario(protocol: GuardedHttpToolsProtocol, transport: Transport) -> None:
        protocol.data_received(_head(b"content-length: 100"))
        for _ in range(500):  # a bound for the timer, reached only if it never fires
            if transport.closed:
                return
            await asyncio.sleep(0.01)

    sent = _serve(_door(doorstep), SpyApp(), PEER, scenario)
    assert sent.closed and doorstep.draining == 0


def test_a_keyless_chunked_body_past_the_drain_bound_is_closed_mid_body() -> None:
    """A body without a length is drained only up to the doorstep's bytes, then closed."""
    doorstep = Doorstep(max_bytes=1000)
    chunk = b"%x\r\n%s\r\n" % (600, b"x" * 600)
    head = _head(b"transfer-encoding: chunked")
    states: list[tuple[bool, int]] = []

    async def scenario(protocol: GuardedHttpToolsProtocol, transport: Transport) -> None:
        for _ in range(2):
            protocol.data_received(chunk if states else head + chunk)
            states.append((transport.closed, doorstep.draining))

    sent = _serve(_door(doorstep), SpyApp(), PEER, scenario)
    assert states == [(False, 1), (True, 0)]
    assert sent.written.startswith(b"HTTP/1.1 401 ")


def test_nothing_after_a_refused_request_on_its_connection_is_served() -> None:
    """A request sent after the refused one, in the same read, gets no answer and never
    reaches the app: the connection closes with the 401."""
    app = SpyApp()
    second = _head(b"authorization: Bearer k", b"content-length: 0")
    sent = _serve(_door(), app, PEER, _feeding(_head(b"content-length: 0") + second))
    assert sent.written.count(b"HTTP/1.1") == 1 and sent.closed and app.paths == []
