"""Plain ASGI middleware: request ids, access logs and request metrics, and the
last-resort error shape. No business logic.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import metrics
from gateway.errors import GatewayError, error_response
from gateway.redaction import redact_keys
from gateway.upstream.hosting import PATH_PREFIX

log = logging.getLogger("gateway")
access_log = logging.getLogger("gateway.access")
POLL_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def new_request_id() -> str:
    """A fresh, unguessable request id (the caller's own id is never trusted)."""
    return "req_" + secrets.token_hex(12)


def _loggable_path(path: str) -> str:
    # A hosted file's path is its capability token: never written anywhere; nor is a key a
    # caller typed where an id belongs (`DELETE /admin/keys/gwk_...`).
    return PATH_PREFIX + "<token>" if path.startswith(PATH_PREFIX) else redact_keys(path)[:200]


class RequestContextMiddleware:
    """Gives every HTTP response an `x-request-id`, writes one JSON access-log line per
    request, times metered requests by endpoint and outcome, and answers unhandled errors in
    OpenAI's shape.

    Handlers leave what they know in `scope["state"]["log"]` (user, team, outcome, cache
    result, upstream time). The middleware sits inside Starlette's ServerErrorMiddleware,
    so a crash is answered here (with the request id), not with a plain-text 500.
    """

    def __init__(self, app: ASGIApp, *, metered: Mapping[str, str], log_polls: bool = True) -> None:
        self.app = app
        self._metered = metered  # the name of each spending endpoint, by path
        # Probes and scrapers poll every few seconds: their successes drown the log.
        self._quiet = frozenset() if log_polls else POLL_PATHS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = new_request_id()
        fields: dict[str, Any] = {}
        scope.setdefault("state", {}).update(request_id=request_id, log=fields)
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            fields["outcome"] = "internal_error"
            if not status:
                await error_response(GatewayError())(scope, receive, send_with_id)
        finally:
            self._record(scope, request_id, status, fields, time.perf_counter() - started)

    def _record(
        self, scope: Scope, request_id: str, status: int, fields: dict[str, Any], seconds: float
    ) -> None:
        if status == 200 and scope["path"] in self._quiet:
            return
        path = scope["path"]
        endpoint = self._metered.get(path)
        record_request(scope["method"], path, request_id, status, fields, seconds, endpoint)


def record_request(
    method: str,
    path: str,
    request_id: str,
    status: int,
    fields: dict[str, Any],
    seconds: float,
    endpoint: str | None,
) -> None:
    """Count a request to the spending `endpoint` by outcome, and write any request's
    access-log line; also for the refusals the server answers before the app
    (`server/protocol.py`)."""
    if endpoint is not None:
        outcome = fields.setdefault("outcome", "ok" if status == 200 else "internal_error")
        metrics.REQUESTS.labels(endpoint, outcome).inc()
        metrics.REQUEST_SECONDS.labels(endpoint, outcome).observe(seconds)
    line = {
        "request_id": request_id,
        "method": method,
        "path": _loggable_path(path),
        "status": status or 499,
        **fields,
        "total_ms": round(seconds * 1000, 2),
    }
    access_log.info(orjson.dumps(line).decode())
