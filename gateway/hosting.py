"""Image files the gateway itself serves at unguessable capability URLs, for 60 minutes.

Used wherever the gateway, not OpenAI, produced the image (the sandbox upstream): like
OpenAI's signed URLs, the URL is the credential, and its `se` query parameter holds the
expiry in the same format, so the cache's TTL rule reads both alike.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from urllib.parse import quote

from gateway.store.base import BlobStore, Clock, make_key

URL_LIFETIME_SECONDS = 3600  # as OpenAI's: valid 60 minutes after `created`
PATH_PREFIX = "/files/"
_TOKEN_BYTES = 32


def _blob_key(token: str) -> str:
    return make_key("file", token)


def expiry_param(expires_at: float) -> str:
    """An expiry as OpenAI's URLs carry it in `se`: ISO 8601 UTC, seconds."""
    return datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ImageHost:
    """Publishes PNG bytes under a fresh capability URL and serves them back."""

    def __init__(self, blobs: BlobStore, public_url: str, clock: Clock = time.time) -> None:
        self._blobs, self._public_url, self._clock = blobs, public_url.rstrip("/"), clock

    async def publish(self, png: bytes) -> str:
        """Store `png` and return its URL; raises `StoreError`."""
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        await self._blobs.put_blob(_blob_key(token), png, URL_LIFETIME_SECONDS)
        expires = quote(expiry_param(self._clock() + URL_LIFETIME_SECONDS), safe="")
        return f"{self._public_url}{PATH_PREFIX}{token}.png?se={expires}"

    async def fetch(self, token: str) -> bytes | None:
        """The PNG published under `token`, or None once expired or never issued."""
        if len(token) > 2 * _TOKEN_BYTES:
            return None
        return await self._blobs.get_blob(_blob_key(token))
