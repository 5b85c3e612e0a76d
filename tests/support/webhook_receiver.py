"""A webhook receiver as a team's on-call tool or chat bridge runs one: a real HTTP server on
loopback that keeps what it is sent, checks each signature as docs/alerts.md tells
receivers to (its own HMAC, not the gateway's code), and can be told to fail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from support.loopback import LoopbackServer, QuietHandler


@dataclass
class Received:
    """One POST as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, secret: str, tolerance_seconds: float = 300) -> bool:
        """Whether the signature header is `v1=` HMAC-SHA256(secret, timestamp + "." + body)
        and the timestamp is recent, compared in constant time."""
        timestamp = self.headers.get("x-gateway-timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance_seconds:
            return False
        mac = hmac.new(secret.encode(), timestamp.encode() + b"." + self.body, hashlib.sha256)
        expected = "v1=" + mac.hexdigest()
        return hmac.compare_digest(expected, self.headers.get("x-gateway-signature", ""))


@dataclass
class WebhookReceiver:
    """Start with `with WebhookReceiver() as hooks:`; `hooks.url(path)` is a webhook URL."""

    status: int = 200  # what every POST is answered
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._handler())

    def url(self, path: str) -> str:
        return self._server.base + path

    def at(self, path: str) -> list[Received]:
        """What was posted to `path`, in order."""
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, seconds: float = 10.0) -> list[Received]:
        """The first `count` posts to `path`, waiting for them at most `seconds`."""
        deadline = time.monotonic() + seconds
        while len(self.at(path)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.at(path)[:count]

    def __enter__(self) -> WebhookReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def _handler(self) -> type[QuietHandler]:
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = receiver.status
                with receiver._lock:
                    receiver.received.append(Received(self.path, headers, body, status))
                self.send_body(status, {"content-type": "text/plain"}, b"ok")

        return Handler
