"""The answer cache: keys, TTL rules, and coalescing of identical misses.

Key: SHA-256 of the image's digest, the normalised parameters and the scope's subject
(plus what answers: the upstream's identity), never the caller's `user`. `url` answers
expire before their URLs do. A cache failure never fails a request: it becomes a miss.

The image's digest is BLAKE3 (`input_hasher`), named in the digest and so in the key: a
key shared across callers needs a cryptographic hash (a crafted collision would serve one
caller's answer to another), and BLAKE3 is one at about three times SHA-256's speed on
the same core, SHA extensions and all (bench/README.md, issue 27). A request whose answer
is never looked up, stored or coalesced (the cache off, `Cache-Control: no-store`) is not
hashed at all (`ResponseCache.hasher`). A change of hash changes every key: the cache
starts cold, nothing stale is served.

Coalescing has two layers. In one process, identical concurrent misses share one future
(if it fails, they try again themselves). Across processes, the leader holds a short lock
in the cache store while it calls upstream; the others poll for the entry and, if the
lock vanishes without one (the leader failed), call upstream themselves. Nobody waits
past `wait_seconds`: then it calls upstream on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Literal, NamedTuple
from urllib.parse import parse_qs, urlsplit

import blake3
import orjson

from gateway import tracing
from gateway.auth.base import Identity
from gateway.multipart import Hasher
from gateway.settings.config import CacheConfig
from gateway.store.base import CacheStore, Clock, StoreError, make_key
from gateway.upstream.base import URL_LIFETIME_SECONDS, UpstreamAnswer

log = logging.getLogger("gateway.cache")
CacheResult = Literal["HIT", "MISS", "BYPASS", "COALESCED"]
Mode = Literal["use", "refresh", "bypass"]
URL_MARGIN_SECONDS = 300  # a hit's URLs stay valid at least this long
_POLL_SECONDS = (0.01, 0.02, 0.05, 0.1)


def input_hasher() -> Hasher:
    """A fresh incremental hash of a request's input, for its cache key: BLAKE3 on one
    thread (the event loop's: an upload arrives in pieces far below what threads repay)."""
    hasher: Hasher = blake3.blake3(max_threads=1)
    return hasher


def cache_mode(cache_control: str | None) -> Mode:
    """`no-store` bypasses the cache; `no-cache` skips the lookup but stores the answer."""
    directives = {part.strip().lower() for part in (cache_control or "").split(",")}
    if "no-store" in directives:
        return "bypass"
    return "refresh" if "no-cache" in directives else "use"


def entry_key(
    config: CacheConfig, identity: Identity, material: Sequence[str], upstream_id: str
) -> str:
    """The key of the answer `material` names (the endpoint's parameters, the input's
    hash), within the configured scope and for what answers (`upstream_id`)."""
    subject = {"global": "", "team": identity.team, "user": identity.user}[config.scope]
    joined = "\n".join((*material, config.scope, subject, upstream_id))
    return make_key("cache", hashlib.sha256(joined.encode()).hexdigest())


def _url_expiry(url: str) -> float | None:
    values = parse_qs(urlsplit(url).query).get("se")
    if not values:
        return None
    try:
        return datetime.fromisoformat(values[0].replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def entry_ttl(body: bytes, response_format: str, ttl_seconds: int, now: float) -> int:
    """How long an answer may be cached: 0 means not at all.

    `url` answers live until min(ttl_seconds, expiry - now - margin), the expiry being the
    earliest `se` of its URLs, else `created` + 60 minutes.
    """
    if response_format != "url":
        return ttl_seconds
    try:
        answer = orjson.loads(body)
        urls = [item["url"] for item in answer["data"]]
        created = float(answer.get("created", now))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0
    expiries = [_url_expiry(url) for url in urls if isinstance(url, str)]
    known = [e for e in expiries if e is not None]
    expiry = min(known) if known else created + URL_LIFETIME_SECONDS
    return max(0, min(ttl_seconds, int(expiry - now - URL_MARGIN_SECONDS)))


class Cached(NamedTuple):
    """An answer and how it was obtained."""

    answer: UpstreamAnswer
    result: CacheResult


class Probe(NamedTuple):
    """A lookup, and on a miss the bid to lead: `leading` is True when this request took the
    key's lock (it calls upstream), False when another holds it, None when the store failed."""

    answer: UpstreamAnswer | None
    lock: str
    token: str
    leading: bool | None


def _pack(answer: UpstreamAnswer) -> bytes:
    return b"%d\n" % answer.images + answer.body


def _unpack(entry: bytes) -> UpstreamAnswer:
    images, _, body = entry.partition(b"\n")
    return UpstreamAnswer(body, int(images), None)


class ResponseCache:
    """Lookup, store and coalescing over a `CacheStore`; store failures become misses."""

    def __init__(
        self,
        store: CacheStore,
        config: CacheConfig,
        *,
        wait_seconds: float,
        lock_seconds: float,
        clock: Clock = time.time,
        on_error: Callable[[], None] = lambda: None,
        new_hasher: Callable[[], Hasher] = input_hasher,
    ) -> None:
        self._store, self._config, self._clock = store, config, clock
        self._wait, self._lock_ms = wait_seconds, int(lock_seconds * 1000)
        self._on_error, self._new_hasher = on_error, new_hasher
        self._inflight: dict[str, asyncio.Future[UpstreamAnswer]] = {}

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    def mode(self, cache_control: str | None) -> Mode:
        """How a request with this `Cache-Control` uses the cache: always `bypass` when it
        is off (see `cache_mode`)."""
        return cache_mode(cache_control) if self._config.enabled else "bypass"

    def hasher(self, mode: Mode) -> Hasher | None:
        """A hasher for the input of a request in `mode`: None when its answer is bypassed
        (never looked up, stored or coalesced), so not one byte of it is hashed."""
        return None if mode == "bypass" else self._new_hasher()

    def hashers(self, mode: Mode) -> Callable[[], Hasher] | None:
        """Fresh hashers, one per input of a request in `mode` (several files); None when
        its answer is bypassed (see `hasher`)."""
        return None if mode == "bypass" else self._new_hasher

    def key(self, identity: Identity, material: Sequence[str], upstream_id: str) -> str:
        """The entry of the answer `material` names for `identity`, within the configured
        scope, from the upstream `upstream_id` (see `entry_key`)."""
        return entry_key(self._config, identity, material, upstream_id)

    async def close(self) -> None:
        """Release the store's connections."""
        await self._store.close()

    async def lookup(self, key: str) -> UpstreamAnswer | None:
        """The cached answer, or None (also when the store fails)."""
        try:
            entry = await self._store.get_entry(key)
        except StoreError as exc:
            self._failed("lookup", exc)
            return None
        return _unpack(entry) if entry is not None else None

    async def probe(self, key: str) -> Probe:
        """The cached answer; on a miss, the lock taken if free (see `abandon`). One round trip."""
        lock, token = key + ":lock", secrets.token_hex(12)
        try:
            with tracing.span("cache.probe"):
                found = await self._store.get_or_lock(key, lock, token, self._lock_ms)
        except StoreError as exc:
            self._failed("lookup", exc)
            return Probe(None, lock, token, None)  # no coalescing without the store: go alone
        if isinstance(found, bytes):
            return Probe(_unpack(found), lock, token, False)
        return Probe(None, lock, token, found)

    async def abandon(self, probe: Probe) -> None:
        """Give up the lock a probe took, if this request will not call upstream after all
        (refused, failed); never raises. Harmless once `fetch` has released it."""
        if probe.leading:
            await self._release(probe.lock, probe.token)

    async def put(
        self, key: str, answer: UpstreamAnswer, response_format: str, *, asked: int
    ) -> None:
        """Store a successful answer of all `asked` images, within the size cap and TTL
        rules; never raises. A short answer is relayed but never stored: the shortfall was
        the upstream's, and a retry may get every image."""
        await self._put(key, answer, response_format, asked)

    async def _put(
        self,
        key: str,
        answer: UpstreamAnswer,
        response_format: str,
        asked: int,
        probe: Probe | None = None,
    ) -> bool:
        """`put`, releasing `probe`'s lock in the same step; whether that release was done."""
        if len(answer.body) > self._config.max_entry_bytes or answer.images < asked:
            return False
        ttl = entry_ttl(answer.body, response_format, self._config.ttl_seconds, self._clock())
        if ttl <= 0:
            return False
        try:
            if probe is None:
                await self._store.put_entry(key, _pack(answer), ttl)
                return False
            await self._store.put_and_release(key, _pack(answer), ttl, probe.lock, probe.token)
        except StoreError as exc:
            self._failed("store", exc)
            return False
        return True

    def _failed(self, what: str, exc: StoreError) -> None:
        self._on_error()
        log.warning("cache %s failed, treated as a miss: %r", what, exc.__cause__ or exc)

    async def fetch(
        self,
        key: str,
        response_format: str,
        produce: Callable[[], Awaitable[UpstreamAnswer]],
        probe: Probe,
        *,
        asked: int,
    ) -> Cached:
        """The answer for a miss of `asked` images `probe`d before: produced here once, or
        awaited from whoever is producing it."""
        shared = self._inflight.get(key)
        if shared is not None and not probe.leading:  # a lock holder never waits on others
            try:
                with tracing.span("cache.wait"):
                    answer = await asyncio.wait_for(asyncio.shield(shared), self._wait)
            except Exception:  # the leader failed or took too long: bid to lead in its place
                log.debug("in-process leader gave nothing for %s", key)
                probe = await self.probe(key)
                if probe.answer is not None:
                    return Cached(probe.answer, "COALESCED")
            else:
                return Cached(answer, "COALESCED")
        future: asyncio.Future[UpstreamAnswer] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            cached = await self._lead_or_wait(key, response_format, produce, probe, asked)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            future.exception()  # retrieved: waiters may be gone
            raise
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]
        future.set_result(cached.answer)
        return cached

    async def _lead_or_wait(
        self,
        key: str,
        response_format: str,
        produce: Callable[[], Awaitable[UpstreamAnswer]],
        probe: Probe,
        asked: int,
    ) -> Cached:
        """Lead (call, store and unlock: the probe took the lock), or wait for the process
        that leads.

        A waiter whose leader vanished without leaving an entry (it failed, or its answer
        could not be cached) or outlived the bound calls upstream itself: retrying under the
        lock instead would queue every waiter behind the next one, one call at a time.
        """
        if probe.leading:
            released = False
            try:
                answer = await produce()
                released = await self._put(key, answer, response_format, asked, probe)
                return Cached(answer, "MISS")
            finally:
                if not released:
                    await self._release(probe.lock, probe.token)
        if probe.leading is False:
            with tracing.span("cache.wait"):
                waited = await self._await_leader(key, probe.lock, time.monotonic() + self._wait)
            if waited is not None:
                return Cached(waited, "COALESCED")
        return await self._produce_and_put(key, response_format, produce, asked)

    async def _produce_and_put(
        self,
        key: str,
        response_format: str,
        produce: Callable[[], Awaitable[UpstreamAnswer]],
        asked: int,
    ) -> Cached:
        answer = await produce()
        await self.put(key, answer, response_format, asked=asked)
        return Cached(answer, "MISS")

    async def _await_leader(self, key: str, lock: str, deadline: float) -> UpstreamAnswer | None:
        """Poll until the leader's entry appears (it), its lock vanishes or time is up (None)."""
        for attempt in itertools.count():
            await asyncio.sleep(_POLL_SECONDS[min(attempt, len(_POLL_SECONDS) - 1)])
            answer = await self.lookup(key)
            if answer is not None:
                return answer
            try:
                if not await self._store.locked(lock) or time.monotonic() >= deadline:
                    return None
            except StoreError as exc:
                self._failed("lock", exc)
                return None
        raise AssertionError("unreachable")

    async def _release(self, lock: str, token: str) -> None:
        try:
            await asyncio.shield(self._store.release(lock, token))
        except StoreError as exc:
            self._failed("unlock", exc)
