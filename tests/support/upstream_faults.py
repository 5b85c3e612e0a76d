"""Every way the upstream can fail, as fake-upstream scripts with the answer SPEC section 5
prescribes for each.

A `Fault` says what the fake upstream does (`reply`) and what the caller must see
(`status`, `code`, `type`, headers) and how many images it gets. Error bodies carry
canaries: the company key, an `sk-` key, a bearer token, a signed URL, an organization id,
a cookie. None may reach a caller.

Faults are picked per request by the image: `FaultyUpstream` maps each fault to its own
PNG, so concurrent callers each know which fault they asked for (see tests/faults).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from support.config import UPSTREAM_KEY
from support.fake_upstream import FakeUpstream, Received, Reply, images_response
from support.loopback import QuietHandler
from support.pngs import make_png

SIGNED_URL = (
    "https://oaidalleapiprodscus.blob.core.windows.net/private/org-CanaryOrg1/user-x/img.png"
    "?st=2024-01-01T00%3A00%3A00Z&se=2099-01-01T00%3A00%3A00Z&sp=r&sig=CanarySig%2Babc%3D"
)
# Upstream text a caller must never see, whichever way it was sent.
CANARIES = (
    UPSTREAM_KEY,
    "sk-proj-CanaryKey0123456789",
    "CanaryBearer",
    "CanarySig",
    "CanaryOrg1",
    "canary-cookie",
)
LEAKY_MESSAGE = (
    f"Request failed for key {UPSTREAM_KEY} (sk-proj-CanaryKey0123456789, "
    f"Authorization: Bearer CanaryBearer) at {SIGNED_URL} via canary-internal-host"
)
LEAKY_HEADERS = {
    "set-cookie": "session=canary-cookie",
    "openai-organization": "org-CanaryOrg1",
    "x-ratelimit-remaining-requests": "0",
}
HANG_LIMIT_SECONDS = 30.0


def error_body(message: str = LEAKY_MESSAGE, **error: str | None) -> dict[str, Any]:
    """An OpenAI error body, carrying the canaries in its message."""
    return {"error": {"message": message, "type": None, "param": None, "code": None, **error}}


HTML_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>"
    + LEAKY_MESSAGE.encode()
    + b"</body></html>"
)


def _rst(handler: QuietHandler) -> None:
    """Close the connection with a TCP reset, not a clean FIN."""
    handler.wfile.flush()
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()
    handler.close_connection = True


def reset_mid_response(handler: QuietHandler) -> None:
    """A 200 head promising a body, half of it, then a reset."""
    body = b'{"created": 1700000000, "data": [{"url": "' + SIGNED_URL.encode() + b'"}]}'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    head += b"content-length: %d\r\nx-request-id: upstream-req-1\r\n\r\n" % len(body)
    handler.wfile.write(head + body[: len(body) // 2])
    _rst(handler)


def reset_before_answering(handler: QuietHandler) -> None:
    """The request is read, then the connection is reset without a byte of answer."""
    _rst(handler)


def truncated_body(handler: QuietHandler) -> None:
    """A 200 whose body stops short of its Content-Length, closed cleanly."""
    body = b'{"created": 1700000000, "data": [{"b64_json": "iVBORw0KGgo'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n"
    handler.wfile.write(head + body)
    handler.wfile.flush()
    handler.connection.shutdown(socket.SHUT_WR)
    handler.close_connection = True


def hang(handler: QuietHandler) -> None:
    """Never answer: wait until the gateway gives up and closes (or a long limit passes)."""
    deadline = time.monotonic() + HANG_LIMIT_SECONDS
    connection = handler.connection
    while time.monotonic() < deadline:
        readable, _, _ = select.select([connection], [], [], 0.1)
        if readable:
            with contextlib.suppress(OSError):
                if connection.recv(1, socket.MSG_PEEK) == b"":
                    break
    handler.close_connection = True


def _images(received: Received, keep: Callable[[int], int]) -> dict[str, Any]:
    body = images_response(received)
    body["data"] = body["data"][: keep(len(body["data"]))]
    return body


@dataclass(frozen=True)
class Fault:
    """One upstream behaviour and the answer a caller must get for it."""

    name: str
    reply: Callable[[Received], Reply]
    status: int
    code: str | None = None
    type: str = "server_error"
    headers: Mapping[str, str | None] = field(default_factory=dict)
    delivered: Callable[[int], int] = lambda n: 0  # images the caller gets when asking n
    refused: bool = False  # connection refused: the upstream is not there at all
    slow: bool = False  # takes (nearly) the upstream timeout

    def expects_images(self, n: int) -> int:
        return self.delivered(n)


def _status(
    status: int, body: bytes | dict[str, Any], **headers: str
) -> Callable[[Received], Reply]:
    return lambda _: Reply(status, body, {**LEAKY_HEADERS, **headers})


UPSTREAM_TIMEOUT = 2.0  # the upstream.timeout_seconds the fault tests configure
SLOW_SECONDS = 0.6 * UPSTREAM_TIMEOUT
RETRY_SOON = {"retry-after": "1"}
NO_RETRY = {"x-should-retry": "false"}

FAULTS: tuple[Fault, ...] = (
    Fault("ok", lambda r: Reply(body=images_response(r)), 200, delivered=lambda n: n),
    Fault(
        "slow-near-timeout",
        lambda r: Reply(body=images_response(r), delay=SLOW_SECONDS),
        200,
        delivered=lambda n: n,
        slow=True,
    ),
    Fault(
        "fewer-images", lambda r: Reply(body=_images(r, lambda n: 1)), 200, delivered=lambda n: 1
    ),
    Fault("no-images", lambda r: Reply(body=_images(r, lambda n: 0)), 200),
    Fault("hung", lambda r: Reply(raw=hang), 504, "upstream_timeout", headers=NO_RETRY, slow=True),
    Fault("refused", lambda r: Reply(), 502, "upstream_error", headers=RETRY_SOON, refused=True),
    Fault(
        "reset-before-answer", lambda r: Reply(raw=reset_before_answering), 502, "upstream_error"
    ),
    Fault("reset-mid-response", lambda r: Reply(raw=reset_mid_response), 502, "upstream_error"),
    Fault("truncated-body", lambda r: Reply(raw=truncated_body), 502, "upstream_error"),
    Fault("200-not-json", _status(200, b"<html>" + LEAKY_MESSAGE.encode()), 502, "upstream_error"),
    Fault(
        "200-truncated-json",
        _status(200, b'{"created": 1, "data": [{"url": "' + SIGNED_URL.encode()),
        502,
        "upstream_error",
    ),
    Fault(
        "200-no-data", _status(200, {"created": 1, "error": LEAKY_MESSAGE}), 502, "upstream_error"
    ),
    Fault(
        "200-data-not-list", _status(200, {"created": 1, "data": SIGNED_URL}), 502, "upstream_error"
    ),
    Fault("500-json", _status(500, error_body(type="server_error")), 502, "upstream_error"),
    Fault(
        "502-html", _status(502, HTML_PAGE, **{"content-type": "text/html"}), 502, "upstream_error"
    ),
    Fault("503-json", _status(503, error_body(type="server_error")), 502, "upstream_error"),
    Fault(
        "503-html", _status(503, HTML_PAGE, **{"content-type": "text/html"}), 502, "upstream_error"
    ),
    Fault(
        "401-company-key",
        _status(401, error_body(type="invalid_request_error", code="invalid_api_key")),
        502,
        "upstream_auth_error",
        headers=NO_RETRY,
    ),
    Fault(
        "403-company-key",
        _status(403, error_body(type="invalid_request_error", code="unsupported_country")),
        502,
        "upstream_auth_error",
        headers=NO_RETRY,
    ),
    Fault(
        "400-request",
        _status(
            400,
            error_body(
                type="invalid_request_error", code="content_policy_violation", param="image"
            ),
        ),
        400,
        "content_policy_violation",
        "invalid_request_error",
    ),
    Fault(
        "429-rate-limit",
        _status(
            429,
            error_body(type="requests", code="rate_limit_exceeded"),
            **{"retry-after": "7"},
        ),
        429,
        "rate_limit_exceeded",
        "requests",
        headers={"retry-after": "7", "x-should-retry": None},
    ),
    Fault(
        "429-insufficient-quota",
        _status(429, error_body(type="insufficient_quota", code="insufficient_quota")),
        429,
        "insufficient_quota",
        "insufficient_quota",
        headers=NO_RETRY,
    ),
)
FAULTS_BY_NAME = {fault.name: fault for fault in FAULTS}


class FaultyUpstream:
    """Scripts a `FakeUpstream` so that each request gets the fault its image stands for.

    `image_for(name)` is the PNG that asks for fault `name`; an unknown image gets "ok".
    (Connection refused cannot be played by a live server: see `Fault.refused`.)
    """

    def __init__(self, upstream: FakeUpstream, faults: tuple[Fault, ...] = FAULTS) -> None:
        self.faults = faults
        self._images = {fault.name: make_png(8, noise=True) for fault in faults}
        self._by_image = {png: FAULTS_BY_NAME[name] for name, png in self._images.items()}
        upstream.script = self._script

    def image_for(self, name: str) -> bytes:
        """The PNG that asks for fault `name` (the same one each time: it may be cached)."""
        return self._images[name]

    def new_image_for(self, name: str) -> bytes:
        """A PNG never seen before that asks for fault `name` (never a cache hit)."""
        png = make_png(8, noise=True)
        self._by_image[png] = FAULTS_BY_NAME[name]
        return png

    def _script(self, received: Received) -> Reply:
        image = received.files.get("image", (None, "", b""))[2]
        fault = self._by_image.get(image, FAULTS_BY_NAME["ok"])
        return fault.reply(received)
