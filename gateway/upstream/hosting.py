"""Image files the gateway itself serves at unguessable capability URLs, for 60 minutes.

Used wherever the gateway, not OpenAI, holds the image bytes (the sandbox upstream, and
the edits adapter, whose model answers inline): like OpenAI's signed URLs, the URL is the
credential, and its `se` query parameter holds the expiry in the same format, so the
cache's TTL rule reads both alike. The files live in the cache's store (an LRU Redis in
production): under memory pressure one may go before its hour is up, but image bytes
never fill the quota store, whose Redis refuses writes when full.
"""

from __future__ import annotations

import base64
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import quote

from gateway.store.base import CacheStore, Clock, make_key
from gateway.upstream.base import URL_LIFETIME_SECONDS

PATH_PREFIX = "/files/"
_TOKEN_BYTES = 32


def _blob_key(token: str) -> str:
    return make_key("file", token)


def expiry_param(expires_at: float) -> str:
    """An expiry as OpenAI's URLs carry it in `se`: ISO 8601 UTC, seconds."""
    return datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ImageHost:
    """Publishes PNG bytes under a fresh capability URL and serves them back."""

    def __init__(self, blobs: CacheStore, public_url: str, clock: Clock = time.time) -> None:
        self._blobs, self._public_url, self._clock = blobs, public_url.rstrip("/"), clock

    async def publish(self, png: bytes) -> str:
        """Store `png` and return its URL; raises `StoreError`."""
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        await self._blobs.put_entry(_blob_key(token), png, URL_LIFETIME_SECONDS)
        expires = quote(expiry_param(self._clock() + URL_LIFETIME_SECONDS), safe="")
        return f"{self._public_url}{PATH_PREFIX}{token}.png?se={expires}"

    async def entry(self, png: bytes, response_format: str) -> dict[str, str]:
        """One `data[]` item of an ImagesResponse: the PNG inline, or published at a URL."""
        if response_format == "b64_json":
            return {"b64_json": base64.b64encode(png).decode("ascii")}
        return {"url": await self.publish(png)}

    async def fetch(self, token: str) -> bytes | None:
        """The PNG published under `token`, or None once expired or never issued."""
        if len(token) > 2 * _TOKEN_BYTES:
            return None
        return await self._blobs.get_entry(_blob_key(token))
