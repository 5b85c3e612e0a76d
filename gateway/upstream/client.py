"""The upstream HTTP client and what the adapters share: multipart POSTs with the company's
credentials, and the mapping of failures to `GatewayError`s, so the endpoint never sees httpx."""

from __future__ import annotations

import http.cookiejar
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, NamedTuple

import httpx
import orjson

from gateway import tracing
from gateway.errors import (
    NO_RETRY,
    UpstreamAnswerLost,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.redaction import known_fields, sanitise
from gateway.settings.config import UpstreamConfig
from gateway.upstream.transport import AiohttpTransport, byte_stream


class Account(NamedTuple):
    """The company's credentials for the upstream: its key, organization and project."""

    api_key: str
    organization: str | None = None
    project: str | None = None


def account_headers(account: Account) -> dict[str, str]:
    """The headers every upstream call carries: the company's key, organization, project."""
    headers = {"authorization": f"Bearer {account.api_key}", "accept": "application/json"}
    if account.organization:
        headers["openai-organization"] = account.organization
    if account.project:
        headers["openai-project"] = account.project
    return headers


class _NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that keeps nothing: the one client serves every caller, so a cookie the
    upstream sets for one request must never be sent with the next (and not storing them
    saves httpx's cookie work on every answer)."""

    def extract_cookies(self, response: object, request: object) -> None:
        pass

    def add_cookie_header(self, request: object) -> None:
        pass


def build_client(
    upstream: UpstreamConfig, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The one long-lived client, with explicit timeouts and pool limits, and no cookies.

    Its wire is aiohttp's pool (`gateway.upstream.transport`: httpx's own slows down with every open
    connection), unless a transport is given (the sandbox, tests).
    """
    limits = httpx.Limits(
        max_connections=upstream.max_connections,
        max_keepalive_connections=upstream.max_connections,
    )
    return httpx.AsyncClient(
        transport=transport or AiohttpTransport(limits),
        timeout=httpx.Timeout(upstream.timeout_seconds, connect=upstream.connect_timeout_seconds),
        follow_redirects=False,
        cookies=_NoCookies(),
    )


def multipart_frame(fields: Mapping[str, str], file_field: str) -> tuple[bytes, bytes, str]:
    """What goes before and after the PNG in a multipart/form-data body, and its Content-Type."""
    parts, content_type = multipart_parts(fields, [(file_field, "image.png", "image/png", b"")])
    return parts[0], parts[2], content_type


# A file part of an upstream call: field name, filename, Content-Type, bytes.
FilePart = tuple[str, str, str, bytes]


def multipart_parts(
    fields: Mapping[str, str], files: Sequence[FilePart]
) -> tuple[list[bytes], str]:
    """A multipart/form-data body as its pieces, framing and file bytes alternating (the
    files are never joined into a copy), and its Content-Type."""
    boundary = secrets.token_hex(16)
    framing = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    parts: list[bytes] = []
    for name, filename, media_type, data in files:
        framing += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {media_type}\r\n\r\n'
        )
        parts += [framing.encode(), data]
        framing = "\r\n"
    parts.append(f"{framing}--{boundary}--\r\n".encode())
    return parts, f"multipart/form-data; boundary={boundary}"


class UpstreamCall:
    """Multipart POSTs to one upstream URL with the company's credentials, and failure mapping.

    Shared by the adapters: they choose the fields; transport failures and non-200 answers
    become `UpstreamError`s here, rebuilt from what `gateway.redaction` lets through.
    """

    def __init__(self, client: httpx.AsyncClient, account: Account, url: str) -> None:
        self._client, self.url, self.api_key = client, url, account.api_key
        self._headers = account_headers(account)
        # Never shown to a caller, whatever the upstream's message says.
        named = (self.api_key, account.organization, account.project)
        self._secrets = tuple(value for value in named if value)

    async def post(
        self, fields: Mapping[str, str], image: bytes, sent: Callable[[], None] | None = None
    ) -> httpx.Response:
        """POST `fields` and the PNG `image` as its `image` part (see `post_files`)."""
        files: list[FilePart] = [("image", "image.png", "image/png", image)]
        del image  # held by `files` alone, which `post_files` empties
        return await self.post_files(fields, files, sent)

    async def post_files(
        self,
        fields: Mapping[str, str],
        files: list[FilePart],
        sent: Callable[[], None] | None = None,
        *,
        stream: bool = False,
    ) -> httpx.Response:
        """POST `fields` and `files` as multipart: any HTTP answer returns, transport errors
        raise.

        The body goes out as its pieces, framing and files: never joined, so the images (up
        to 4 MiB each) are not copied once more for each request. `sent` is called once the
        transport has written them all; from then on only the caller's `sent` keeps them.
        `files` is emptied: the body holds the images until written, not a frame until the
        answer. `stream`: the answer's body is left unread (the caller reads and closes it).
        """
        parts, content_type = multipart_parts(fields, files)
        files.clear()
        headers = {**self._headers, "content-type": content_type}
        headers["content-length"] = str(sum(len(part) for part in parts))
        body = byte_stream(*parts, then=sent)
        parts.clear()
        return await self._send(headers, body, stream)

    async def post_json(
        self, payload: Mapping[str, object], *, stream: bool = False
    ) -> httpx.Response:
        """POST `payload` as JSON (see `post_files`)."""
        body = orjson.dumps(payload)
        headers = {**self._headers, "content-type": "application/json"}
        headers["content-length"] = str(len(body))
        return await self._send(headers, byte_stream(body), stream)

    async def _send(
        self, headers: Mapping[str, str], body: AsyncIterator[bytes], stream: bool = False
    ) -> httpx.Response:
        headers = {**headers, **tracing.outgoing()}
        try:
            request = self._client.build_request("POST", self.url, content=body, headers=headers)
            return await self._client.send(request, stream=stream)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing was sent
            raise UpstreamUnreachable() from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.HTTPError as exc:  # sent, maybe in full: the answer is what was lost
            raise UpstreamAnswerLost("The upstream image service's answer was lost.") from exc

    def failure(self, response: httpx.Response, error: Mapping[str, Any]) -> UpstreamError:
        """The caller's view of a non-200 answer whose error object is `error`."""
        status = response.status_code
        headers = request_id_header(response)
        if status in (401, 403):
            return UpstreamAuthError(headers=headers)
        if not 400 <= status < 500:
            return UpstreamError(headers=headers)
        fields = known_fields(status, error.get("type"), error.get("code"), error.get("param"))
        if status == 429:
            headers.update(_retry_headers(response.headers, fields.code))
        return UpstreamRejected(
            status,
            self.sanitise(str(error.get("message") or "The upstream refused the request.")),
            type_=fields.type,
            code=fields.code,
            param=fields.param,
            headers=headers,
        )

    def sanitise(self, message: str) -> str:
        """An upstream message made safe to show a caller."""
        return sanitise(message, self._secrets)


def malformed() -> UpstreamError:
    """The error for an upstream 200 whose body is not what the wire format promises (the
    upstream said it succeeded: it may have billed)."""
    return UpstreamAnswerLost("The upstream image service sent a malformed answer.")


def request_id_header(response: httpx.Response) -> dict[str, str]:
    """The upstream's request id, as the header relayed to the caller."""
    request_id = response.headers.get("x-request-id")
    return {"x-upstream-request-id": request_id} if request_id else {}


def error_object(content: bytes) -> dict[str, Any]:
    """The `error` object of an OpenAI-shaped error body, or {}."""
    try:
        error = orjson.loads(content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def str_or_none(value: object) -> str | None:
    """A string field of an upstream error, bounded; None for anything else."""
    return value[:128] if isinstance(value, str) else None


def _retry_headers(upstream: httpx.Headers, code: str | None) -> dict[str, str]:
    headers = {k: upstream[k] for k in ("retry-after", "retry-after-ms") if k in upstream}
    if code == "insufficient_quota":
        headers.update(NO_RETRY)
    return headers
