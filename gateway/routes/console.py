"""GET /admin/console: the admin web console, a static page on the admin API.

The page and its two assets ship in the package (`gateway/console/`) and are served as
they are: no build step, nothing from a third party, no data. Loading them needs no
credentials (the shell holds nothing); every piece of data the page shows or changes it
asks of the admin API with the admin's own credential, so each action is authorised,
validated and audited there, exactly as for the CLI. A strict Content-Security-Policy on
every console response lets the browser run only these files and talk only to this
origin, so injected markup could neither run script nor send a credential elsewhere.

With `identity.jwt.console` set, the page also signs admins in with the company IdP
(auth/signin.py): `GET /admin/console/sso` tells it where to send the browser, the IdP
returns to `/admin/console/callback` (a static page that hands the code to the console
tab), and `POST /admin/console/sso/token` redeems the code with its PKCE verifier.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.auth.signin import ConsoleSignIn
from gateway.errors import InvalidRequest, NotFound, RequestTooLarge

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
    "chart.js": "text/javascript; charset=utf-8",
    "callback.html": "text/html; charset=utf-8",
    "callback.js": "text/javascript; charset=utf-8",
}
MAX_SIGN_IN_BODY = 16 * 1024


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
    if name.endswith(".html") or name not in ASSETS:
        raise NotFound("No such console file.")
    return _asset_response(name)


async def callback(request: Request) -> Response:
    """Where the IdP sends the browser back: a page that hands the code to the console."""
    return _asset_response("callback.html")


def _sign_in(request: Request) -> ConsoleSignIn:
    sign_in: ConsoleSignIn | None = request.app.state.services.sign_in
    if sign_in is None:
        raise NotFound("SSO sign-in is not configured (identity.jwt.console).")
    return sign_in


async def sso(request: Request) -> Response:
    """Whether the console offers SSO sign-in, and where it sends the browser."""
    if request.app.state.services.sign_in is None:
        return JSONResponse({"enabled": False}, headers=SECURITY_HEADERS)
    sign_in = _sign_in(request)
    endpoints = await sign_in.endpoints()
    return JSONResponse(
        {
            "enabled": True,
            "authorization_endpoint": endpoints.authorization,
            "client_id": sign_in.config.client_id,
            "scope": " ".join(sign_in.config.scopes),
        },
        headers=SECURITY_HEADERS,
    )


async def sso_token(request: Request) -> Response:
    """Redeem an authorization code and its PKCE verifier for the console's bearer token."""
    sign_in = _sign_in(request)
    body = await request.body()
    if len(body) > MAX_SIGN_IN_BODY:
        raise RequestTooLarge("Sign-in bodies are small.")
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        fields = None
    names = ("code", "code_verifier", "redirect_uri", "nonce")
    if not isinstance(fields, dict) or not all(isinstance(fields.get(n), str) for n in names):
        raise InvalidRequest(f"Send {', '.join(names)} as strings.", code="invalid_value")
    done = await sign_in.redeem(*(fields[n] for n in names))
    request.state.log.update(done.identity.log_fields())
    return JSONResponse(
        {
            "token": done.token,
            "expires_at": done.expires_at,
            "user": done.identity.user,
            "team": done.identity.team,
            "role": done.identity.role,
        },
        headers={**SECURITY_HEADERS, "cache-control": "no-store"},
    )


ROUTES = [
    Route(PAGE_PATH, page, methods=["GET"]),
    Route(PAGE_PATH + "/callback", callback, methods=["GET"]),
    Route(PAGE_PATH + "/sso", sso, methods=["GET"]),
    Route(PAGE_PATH + "/sso/token", sso_token, methods=["POST"]),
    Route(PAGE_PATH + "/{name}", asset, methods=["GET"]),
]
