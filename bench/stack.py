"""`stack`: the gateway's libraries doing the least a gateway miss must do, and nothing else.

What a cost goal can be measured against besides `direct` and `nginx`: the stack the
product is specified on (uvicorn with uvloop and httptools, redis-py's asyncio client,
httpx), configured as the gateway configures it, on the same miss path minus every
decision. Per request, it:

- reads the body from the ASGI receive loop, hashing it (BLAKE3, as the cache key does);
- runs three Lua scripts in Redis, the round trips of a gateway miss (cache lookup and
  lock, quota reserve, store and unlock), through `gateway.store.connect.connect`'s pool;
- POSTs the body, as received, to the upstream with httpx over the gateway's transport
  (`gateway.upstream.transport`), and relays the answer.

No auth, no multipart parsing, no PNG checks, no quota or cache logic, no logs or metrics:
whatever the gateway costs beyond this row is the gateway's own code. `GET /healthz` answers
200. Run by `bench.session` as `python -m bench.stack --port P --upstream URL --redis URL`; it
tunes malloc as `gateway serve` does.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import blake3
import httpx
import uvicorn

from gateway.server.allocator import tune_malloc
from gateway.store.connect import connect
from gateway.upstream.transport import AiohttpTransport

# Each script touches one key of its own, as the gateway's do.
_SCRIPT = "return redis.call('INCR', KEYS[1])"
_KEYS = ("bench:stack:probe", "bench:stack:reserve", "bench:stack:store")
_PATH = "/images/variations"


class StackApp:
    """A raw ASGI app: lifespan opens the Redis pool and the upstream client."""

    def __init__(self, upstream_url: str, redis_url: str) -> None:
        self._url, self._redis_url = upstream_url.rstrip("/") + _PATH, redis_url
        self._client: httpx.AsyncClient | None = None
        self._script: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["path"] == "/healthz":
            await _answer(send, 200, b"{}")
        else:
            await self._forward(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._script = connect(self._redis_url).register_script(_SCRIPT)
                # As the gateway's default pool: one connection per request in flight.
                limits = httpx.Limits(max_connections=4096, max_keepalive_connections=4096)
                self._client = httpx.AsyncClient(
                    transport=AiohttpTransport(limits),
                    timeout=120,  # the gateway's default
                )
                await self._client.__aenter__()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, scope: Any, receive: Any, send: Any) -> None:
        assert self._client is not None
        chunks, digest = [], blake3.blake3(max_threads=1)
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
                digest.update(chunk)
            if not message.get("more_body"):
                break
        for key in _KEYS:
            await self._script(keys=[key], args=[digest.hexdigest()])
        headers = dict(scope["headers"])
        answer = await self._client.post(
            self._url,
            content=b"".join(chunks),
            headers={
                "content-type": headers.get(b"content-type", b"").decode("latin-1"),
                "authorization": headers.get(b"authorization", b"").decode("latin-1"),
            },
        )
        await _answer(send, answer.status_code, answer.content)


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stack", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's /v1 base URL")
    parser.add_argument("--redis", required=True, help="a Redis URL")
    args = parser.parse_args(argv)
    tune_malloc(os.environ)  # as `gateway serve` does for itself
    uvicorn.run(
        StackApp(args.upstream, args.redis),
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        log_level="warning",
        backlog=4096,  # as the gateway: the slow cells' callers all connect at once
    )


if __name__ == "__main__":
    main()
