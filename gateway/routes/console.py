"""GET /admin/console: the admin web console, a static page on the admin API.

The page and its two assets ship in the package (`gateway/console/`) and are served as
they are: no build step, nothing from a third party, no data. Loading them needs no
credentials (the shell holds nothing); every piece of data the page shows or changes it
asks of the admin API with the admin's own credential, so each action is authorised,
validated and audited there, exactly as for the CLI. A strict Content-Security-Policy on
every console response lets the browser run only these files and talk only to this
origin, so injected markup could neither run script nor send a credential elsewhere.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import NotFound

PAGE_PATH = "/admin/console"
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",  # forms are read by the script, never submitted by the browser
    ]
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    # Revalidated on each load: an upgraded gateway never runs last version's script.
    "cache-control": "no-cache",
}
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "models.js": "text/javascript; charset=utf-8",  # the Models page, imported by console.js
    "console.css": "text/css; charset=utf-8",
}


@cache
def asset_bytes(name: str) -> bytes:
    """An asset's bytes, read from the package once per process."""
    return resources.files("gateway").joinpath("console", name).read_bytes()


def _asset_response(name: str) -> Response:
    return Response(asset_bytes(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)


async def page(request: Request) -> Response:
    """The console's shell; it signs the admin in and reads everything from the admin API."""
    return _asset_response("index.html")


async def asset(request: Request) -> Response:
    """The console's script or stylesheet; any other name is 404."""
    name = request.path_params["name"]
    if name == "index.html" or name not in ASSETS:
        raise NotFound("No such console file.")
    return _asset_response(name)


ROUTES = [
    Route(PAGE_PATH, page, methods=["GET"]),
    Route(PAGE_PATH + "/{name}", asset, methods=["GET"]),
]
