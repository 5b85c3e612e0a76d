"""The plumbing of the fake servers tests run: a threaded HTTP server on a free loopback
port, and a quiet handler base that answers with a complete body.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    # The stdlib's backlog of 5 refuses connections when a test fires dozens at once.
    request_queue_size = 1024
    daemon_threads = True


class LoopbackServer:
    """Serves `handler` on 127.0.0.1 (a free port) from a background thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._running = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()
        self._running = True

    def stop(self) -> None:
        """Stop serving and close the port (new connections are refused); idempotent."""
        if self._running:
            self._server.shutdown()
            self._running = False
        self._server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, no access log, and one call to send a whole answer."""

    protocol_version = "HTTP/1.1"

    def send_body(
        self, status: int, headers: Mapping[str, str], body: bytes, *, close: bool = False
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        if close:
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        # The gateway may have given up (closed, timed out): then nobody is there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return
