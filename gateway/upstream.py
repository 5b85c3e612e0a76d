"""The only module that knows OpenAI's variations wire format.

The upstream request is rebuilt from an allowlist (image, model, n, size, response_format,
user, and the company's credentials); nothing else of the caller's is forwarded. Answers
and failures are translated here into an `UpstreamAnswer` or a `GatewayError`, so the
endpoint never sees httpx.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any, NamedTuple

import httpx
import orjson

from gateway.errors import (
    NO_RETRY,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from gateway.params import VariationRequest
from gateway.settings import Settings
from gateway.transport import AiohttpTransport

MAX_MESSAGE_CHARS = 500
# Anything that looks like a credential is cut out of upstream messages before relaying.
_CREDENTIAL = re.compile(
    r"(sk-[A-Za-z0-9_\-*]{4,}|Bearer\s+\S+|(org|proj)-[A-Za-z0-9]{6,}|key[=:]\s*\S+)", re.I
)


class UpstreamAnswer(NamedTuple):
    """A successful upstream answer: the body to relay unchanged and what it delivered."""

    body: bytes
    images: int
    request_id: str | None


def build_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The one long-lived client, with explicit timeouts and pool limits.

    Its wire is aiohttp's pool (`gateway.transport`: httpx's own slows down with every open
    connection), unless a transport is given (the sandbox, tests).
    """
    upstream = settings.config.upstream
    limits = httpx.Limits(
        max_connections=upstream.max_connections,
        max_keepalive_connections=upstream.max_connections,
    )
    return httpx.AsyncClient(
        transport=transport or AiohttpTransport(limits),
        timeout=httpx.Timeout(upstream.timeout_seconds, connect=upstream.connect_timeout_seconds),
        follow_redirects=False,
    )


def encode_multipart(
    fields: Mapping[str, str], file_field: str, file_bytes: bytes
) -> tuple[bytes, str]:
    """A multipart/form-data body (built once, in one join) and its Content-Type."""
    boundary = secrets.token_hex(16)
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    file_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        'filename="image.png"\r\nContent-Type: image/png\r\n\r\n'
    )
    body = b"".join(((head + file_head).encode(), file_bytes, f"\r\n--{boundary}--\r\n".encode()))
    return body, f"multipart/form-data; boundary={boundary}"


def sanitise(message: str, secret: str | None = None) -> str:
    """An upstream message made safe to show a caller: no credentials, bounded length."""
    if secret:
        message = message.replace(secret, "[redacted]")
    return _CREDENTIAL.sub("[redacted]", message)[:MAX_MESSAGE_CHARS]


class VariationsUpstream:
    """Forwards a validated request to `{base_url}/images/variations`."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings, base_url: str) -> None:
        upstream = settings.config.upstream
        self._client = client
        self._url = base_url.rstrip("/") + "/images/variations"
        self._api_key = (
            settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else ""
        )
        self._headers = {"authorization": f"Bearer {self._api_key}", "accept": "application/json"}
        if upstream.organization:
            self._headers["openai-organization"] = upstream.organization
        if upstream.project:
            self._headers["openai-project"] = upstream.project

    async def create_variation(self, request: VariationRequest, user: str) -> UpstreamAnswer:
        """Send the request upstream; raises an `UpstreamError` subclass on any failure."""
        fields = {
            "model": request.model,
            "n": str(request.n),
            "size": request.size,
            "response_format": request.response_format,
            "user": user,
        }
        body, content_type = encode_multipart(fields, "image", request.image)
        try:
            response = await self._client.post(
                self._url, content=body, headers={**self._headers, "content-type": content_type}
            )
        except httpx.ConnectTimeout as exc:
            raise UpstreamError("The upstream image service could not be reached.") from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.HTTPError as exc:
            raise UpstreamError("The upstream image service could not be reached.") from exc
        return self._read(response)

    def _read(self, response: httpx.Response) -> UpstreamAnswer:
        request_id = response.headers.get("x-request-id")
        if response.status_code != 200:
            raise self._failure(response, request_id)
        try:
            data = orjson.loads(response.content)["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise UpstreamError("The upstream image service sent a malformed answer.") from exc
        if not isinstance(data, list):
            raise UpstreamError("The upstream image service sent a malformed answer.")
        return UpstreamAnswer(response.content, len(data), request_id)

    def _failure(self, response: httpx.Response, request_id: str | None) -> UpstreamError:
        status = response.status_code
        headers = {"x-upstream-request-id": request_id} if request_id else {}
        if status in (401, 403):
            return UpstreamAuthError(headers=headers)
        if not 400 <= status < 500:
            return UpstreamError(headers=headers)
        error = _error_object(response.content)
        code = _str_or_none(error.get("code"))
        if status == 429:
            headers.update(_retry_headers(response.headers, code))
        return UpstreamRejected(
            status,
            sanitise(
                str(error.get("message") or "The upstream refused the request."), self._api_key
            ),
            type_=_str_or_none(error.get("type")) or "invalid_request_error",
            code=code,
            param=_str_or_none(error.get("param")),
            headers=headers,
        )


def _error_object(content: bytes) -> dict[str, Any]:
    try:
        error = orjson.loads(content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _str_or_none(value: object) -> str | None:
    return value[:128] if isinstance(value, str) else None


def _retry_headers(upstream: httpx.Headers, code: str | None) -> dict[str, str]:
    headers = {k: upstream[k] for k in ("retry-after", "retry-after-ms") if k in upstream}
    if code == "insufficient_quota":
        headers.update(NO_RETRY)
    return headers
