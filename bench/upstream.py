"""A fast fake OpenAI upstream: raw ASGI under uvicorn (uvloop + httptools), its own process.

`POST /v1/images/variations` reads and drops the whole body, waits `--delay-ms` if asked
(to hold many requests in flight), and answers a fixed small ImagesResponse; generations and
edits the same, with an image model's answer (one inline image and `usage`). `GET /healthz`
answers 200; `PUT /bench/delay` with a number of milliseconds as its body changes the delay
(the matrix runs its zero-latency and its slow-upstream cells against one process);
`POST /v1/traces` is an OTLP/HTTP sink for a traced gateway (`--tracing`): it reads and
drops the spans and answers an empty export response; anything else 404. Run it as
`python -m bench.upstream --port P`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ANSWER = (
    b'{"created": 1700000000, "data": [{"url": '
    b'"https://example.invalid/img.png?se=2099-01-01T00%3A00%3A00Z"}]}'
)
PATH = "/v1/images/variations"
# An image model's answer to /v1/images/generations and /v1/images/edits: one inline image
# (a 1x1 PNG) and a usage block.
MODEL_PATHS = ("/v1/images/generations", "/v1/images/edits")
MODEL_ANSWER = (
    b'{"created": 1700000000, "data": [{"b64_json": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1Pe'
    b'AAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"}], "usage": {"input_tokens": 400, '
    b'"input_tokens_details": {"text_tokens": 12, "image_tokens": 388}, "output_tokens": 196, '
    b'"total_tokens": 596}}'
)
DELAY_PATH = "/bench/delay"
OTLP_PATH = "/v1/traces"


def create_app(delay_ms: float = 0.0) -> Callable[[Message, Receive, Send], Awaitable[None]]:
    """The fake upstream as a raw ASGI app; `delay_ms` is added before each answer."""
    delay = [delay_ms / 1000.0]
    ids = itertools.count(1)

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        received, more = b"", True
        while more:  # read and drop the whole body, whatever the path
            message = await receive()
            if scope["path"] == DELAY_PATH:
                received += message.get("body", b"")
            more = message.get("more_body", False) and message["type"] == "http.request"
        if scope["method"] == "POST" and scope["path"] in (PATH, *MODEL_PATHS):
            if delay[0]:
                await asyncio.sleep(delay[0])
            status, body = 200, ANSWER if scope["path"] == PATH else MODEL_ANSWER
        elif scope["method"] == "POST" and scope["path"] == OTLP_PATH:
            status, body = 200, b""  # an empty ExportTraceServiceResponse: all accepted
        elif scope["method"] == "GET" and scope["path"] == "/healthz":
            status, body = 200, b'{"status": "ok"}'
        elif scope["method"] == "PUT" and scope["path"] == DELAY_PATH:
            delay[0] = float(received) / 1000.0
            status, body = 200, b'{"delay_ms": %g}' % (delay[0] * 1000)
        else:
            status, body = 404, b'{"error": {"message": "not found"}}'
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", f"req_fake_{next(ids)}".encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    """Serve the fake upstream on 127.0.0.1 until terminated."""
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.delay_ms),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
