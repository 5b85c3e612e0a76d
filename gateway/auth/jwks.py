"""The identity provider's signing keys (its JWKS), fetched on demand and cached.

Rules, in the order a lookup meets them:

- Keys are fetched on first use (the gateway starts, and API keys work, with the IdP down).
- A cached set older than `cache_seconds` is refreshed; a lookup of a key it holds does not
  wait for that refresh (the stale key is served meanwhile).
- A key id not in the set triggers a refresh (the IdP rotated its keys), and the lookup
  waits for it. Such lookups start a fetch at most once per `min_refresh_seconds`, so
  tokens with made-up key ids cannot turn the gateway into a flood against the IdP; a
  failed fetch is likewise retried at most that often.
- Concurrent lookups share one fetch, and one lookup waits for one fetch at most. A failed
  fetch keeps the cached keys: callers whose key is cached keep working through an outage.

Only public keys of the configured algorithms are ever used; symmetric (`oct`) and
encryption keys in the document are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

import httpx
from jwt import PyJWK, PyJWTError

from gateway.redaction import without_credentials

log = logging.getLogger("gateway.jwks")
JwkDict = dict[str, Any]
MAX_JWKS_BYTES = 1024 * 1024
SIGNING_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


class JwksError(Exception):
    """Base of the JWKS lookup failures."""


class JwksUnavailable(JwksError):
    """The key id is not cached and the JWKS could not be fetched (the message says why)."""


class UnknownKey(JwksError):
    """The IdP's current key set has no key with this id."""


class UnusableKey(JwksError):
    """The key exists but cannot verify the token's algorithm (wrong type, or its own `alg`)."""


def parse_jwks(body: bytes) -> dict[str, JwkDict]:
    """The usable signing keys of a JWKS document by key id; raises `JwksUnavailable`."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise JwksUnavailable("the JWKS is not JSON") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise JwksUnavailable("the JWKS has no 'keys' list")
    usable: dict[str, JwkDict] = {}
    for jwk in keys:
        if _is_signing_key(jwk) and jwk["kid"] not in usable:
            usable[jwk["kid"]] = jwk
    if not usable:
        raise JwksUnavailable("the JWKS holds no usable signing key")
    return usable


def _is_signing_key(jwk: object) -> bool:
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
        return False
    if jwk.get("kty") not in SIGNING_KEY_TYPES or jwk.get("use", "sig") != "sig":
        return False
    if "d" in jwk:  # private key material has no business in a published key set
        return False
    try:
        PyJWK(jwk)  # the key material parses
    except Exception:  # a malformed entry is skipped; it must not spoil the others
        return False
    return True


class JwksCache:
    """The signing keys at `url`, refreshed as the module docstring describes."""

    def __init__(
        self,
        url: str,
        *,
        algorithms: Collection[str],
        cache_seconds: float,
        min_refresh_seconds: float,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url, self._algorithms, self._clock = url, frozenset(algorithms), clock
        self._cache_seconds, self._min_refresh = cache_seconds, min_refresh_seconds
        # Its own client (short timeouts, no redirects); `transport` is its wire, if given
        # (a proxy's, a test's), else httpx's own.
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            headers={"accept": "application/json"},
        )
        self._keys: dict[str, JwkDict] = {}
        self._prepared: dict[tuple[str, str], PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch started, for any reason
        self._lookup_at: float | None = None  # last fetch started for an unknown key id
        self._failure: str | None = None  # why the last fetch failed, if it did
        self._refresh: asyncio.Task[None] | None = None

    async def key(self, kid: str, algorithm: str) -> PyJWK:
        """The key `kid`, bound to `algorithm` (one of the configured ones).

        Raises `UnknownKey` when the IdP's current set lacks it, `JwksUnavailable` when it
        is not cached and the set cannot be fetched now, `UnusableKey` when it does not fit
        `algorithm`.
        """
        if self._is_stale() and self._may_fetch(self._attempted_at):
            self._start_refresh()  # awaited below only if this lookup needs it
        if kid not in self._keys:
            if self._refresh is None and self._may_fetch(self._lookup_at):
                self._lookup_at = self._clock()
                self._start_refresh()
            if self._refresh is not None:
                await asyncio.shield(self._refresh)  # one fetch for every waiting lookup
        jwk = self._keys.get(kid)
        if jwk is None:
            if self._failure is not None:
                raise JwksUnavailable(self._failure)
            raise UnknownKey(kid)
        return self._bind(kid, jwk, algorithm)

    async def close(self) -> None:
        """Stop a refresh in flight and close the HTTP client."""
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
        await self._client.aclose()

    def _is_stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._cache_seconds

    def _may_fetch(self, last: float | None) -> bool:
        return last is None or self._clock() - last >= self._min_refresh

    def _start_refresh(self) -> None:
        """Start a fetch, unless one is in flight (then that one serves everybody)."""
        if self._refresh is None:
            self._attempted_at = self._clock()
            self._refresh = asyncio.get_running_loop().create_task(self._run_refresh())

    async def _run_refresh(self) -> None:
        try:
            keys = await self._fetch()
        except Exception as exc:
            expected = isinstance(exc, JwksUnavailable)
            self._failure = str(exc) if expected else "the JWKS fetch failed"
            log.warning(
                "JWKS fetch from %s failed (%s); keeping %d cached keys",
                without_credentials(self._url),  # a URL may carry user:password@
                self._failure,
                len(self._keys),
                exc_info=not expected,
            )
        else:
            self._keys, self._prepared = keys, {}
            self._fetched_at, self._failure = self._clock(), None
        finally:
            self._refresh = None

    async def _fetch(self) -> dict[str, JwkDict]:
        try:
            async with self._client.stream("GET", self._url) as response:
                if response.status_code != 200:
                    raise JwksUnavailable(f"the JWKS URL answered HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksUnavailable("the JWKS is larger than 1 MiB")
        except httpx.HTTPError as exc:
            raise JwksUnavailable(f"the JWKS URL is unreachable ({type(exc).__name__})") from exc
        return parse_jwks(bytes(body))

    def _bind(self, kid: str, jwk: JwkDict, algorithm: str) -> PyJWK:
        """The key as a verifier for `algorithm`; its own `alg`, if it has one, must agree."""
        prepared = self._prepared.get((kid, algorithm))
        if prepared is not None:
            return prepared
        if algorithm not in self._algorithms or jwk.get("alg", algorithm) != algorithm:
            raise UnusableKey(kid)
        try:
            prepared = PyJWK(jwk, algorithm)
        except (PyJWTError, ValueError, TypeError, KeyError) as exc:  # e.g. RSA key, ES256
            raise UnusableKey(kid) from exc
        self._prepared[(kid, algorithm)] = prepared
        return prepared
