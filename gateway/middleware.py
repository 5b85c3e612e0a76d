"""Plain ASGI middleware: request ids and the last-resort error shape. No business logic."""

from __future__ import annotations

import logging
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError, error_response

log = logging.getLogger("gateway")


def new_request_id() -> str:
    """A fresh, unguessable request id (the caller's own id is never trusted)."""
    return "req_" + secrets.token_hex(12)


class RequestContextMiddleware:
    """Gives every HTTP response an `x-request-id`, and any unhandled error OpenAI's shape.

    It sits inside Starlette's own ServerErrorMiddleware, so a crash is answered here (with
    the request id) and that middleware's plain-text 500 is never sent.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not started:
                await error_response(GatewayError())(scope, receive, send_with_id)
