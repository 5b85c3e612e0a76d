"""`naive`: the pass-through anyone would write first with the gateway's own libraries.

A Starlette app whose one route reads the upload with `await request.form()` (Starlette's
parser over python-multipart, the image spooled in a `SpooledTemporaryFile`), reads the
file part back, and POSTs the fields and the image to the upstream with a plain
`httpx.AsyncClient` (`data=`, `files=`: httpx builds the multipart body), then relays the
answer. No auth, checks, quota, cache, logs or metrics; uvicorn's defaults (uvloop and
httptools when installed, as they are here). It is the yardstick of issue 27: what the
gateway's whole miss path costs per request next to the least a Python proxy does.

Run by `bench.session` as `python -m bench.naive --port P --upstream URL`; `GET /healthz`
answers 200.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Sequence

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_PATH = "/v1/images/variations"


def create_app(upstream_url: str) -> Starlette:
    """The naive pass-through to `upstream_url` + /images/variations."""
    target = upstream_url.rstrip("/") + "/images/variations"
    clients: list[httpx.AsyncClient] = []

    async def variations(request: Request) -> Response:
        form = await request.form()
        fields: dict[str, str] = {}
        files: dict[str, tuple[str | None, bytes, str | None]] = {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                files[name] = (value.filename, await value.read(), value.content_type)
            else:
                fields[name] = value
        await form.close()
        auth = {"authorization": request.headers.get("authorization", "")}
        answer = await clients[0].post(target, data=fields, files=files, headers=auth)
        return Response(answer.content, answer.status_code, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=120) as client:
            clients.append(client)
            yield

    routes = [Route(_PATH, variations, methods=["POST"]), Route("/healthz", healthz)]
    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the naive pass-through on 127.0.0.1 until terminated."""
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's /v1 base URL")
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
