"""Where the admin plane keeps its state: one hash per target of `records.TARGETS` (runtime
keys, quota rules, webhooks, alert rules, model lists and prices), the audit trail, the
webhook deliveries, the sampled last use of keys, and (read only) the chargeback books.

`AdminStore` lists what the gateway needs; `RedisAdminStore` keeps it in the state Redis
(every key under the `{admin}` hash tag, so a write and its audit entry are one script on a
cluster too), `MemoryAdminStore` in the process (the in-process store's companion: admin
writes work, for one process, until it stops). Every write is compare-and-set on a
generation counter: a writer that lost a race re-reads and decides again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import itertools
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from gateway.admin.records import TARGETS, AuditQuery, Change, Snapshot, Target, snapshot_of
from gateway.quota.books import Book, By, book_pattern, parse_book_key
from gateway.store.base import StoreError, make_key
from gateway.store.client import call, lua

AUDIT_DAYS = 400
DELIVERIES_KEPT = 10_000  # the newest webhook deliveries kept, every webhook together
_SCAN_BATCH = 200  # audit entries read per round trip while filtering
_SCAN_LIMIT = 20_000  # entries one audit read looks through at most
Books = dict[Book, dict[str, int]]


def admin_key(*parts: str) -> str:
    """`gw:v1:admin:{admin}:<part>`: every admin key in one Cluster slot."""
    return make_key("admin", "admin", *parts)


CHANNEL = admin_key("changes")
AUDIT = make_key("audit", "admin")
DELIVERIES = admin_key("deliveries")


class AdminStore(Protocol):
    """The admin plane's state. Every method raises `StoreError` when the backend fails."""

    async def snapshot(self) -> Snapshot:
        """Every runtime key and rule, with the generation they are as of."""

    async def generation(self) -> int:
        """The current generation (it moves with every write)."""

    async def apply(self, change: Change, read: int, now: float) -> str | None:
        """Atomically, if the generation is still `read`: write `change`, append its audit
        entry (kept 400 days) and tell every replica. The entry's id, or None (conflict)."""

    async def record(self, entry: Mapping[str, Any], now: float) -> str:
        """Append an audit entry of something the gateway did itself (no state changes;
        kept 400 days). Its id."""

    async def wait_for_change(self, seconds: float) -> bool:
        """Return when a write may have happened (True: a change message came), or after
        `seconds` (False)."""

    async def listen_again(self) -> None:
        """Drop the change messages' connection, to open a fresh one at the next wait (the
        old one may have gone silent)."""

    async def audit(self, query: AuditQuery) -> list[dict[str, Any]]:
        """Audit entries matching `query`, newest first, each with its `id` (ms-seq)."""

    async def last_used(self) -> dict[str, float]:
        """When each key was last seen in use (sampled), by key id."""

    async def mark_used(self, seen: Mapping[str, float]) -> None:
        """Record uses; a time never moves backwards."""

    async def books(self, by: By, stamp: str) -> Books:
        """The chargeback books of a month (`YYYYMM`), by owner."""

    async def record_delivery(self, entry: Mapping[str, Any]) -> None:
        """Append one webhook delivery attempt's outcome (the newest 10,000 are kept)."""

    async def deliveries(self, webhook: str | None, limit: int) -> list[dict[str, Any]]:
        """The latest delivery outcomes, newest first (of one webhook, if named)."""

    async def read_books(self, keys: Sequence[str]) -> list[dict[str, int]]:
        """The books at `keys` (empty for none), in one round trip."""

    async def close(self) -> None:
        """Release connections."""


def _entry_id(now: float, seq: int) -> str:
    return f"{int(now * 1000)}-{seq}"


def _id_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def _id_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _in_range(query: AuditQuery, entry_id: str) -> bool:
    ms = _id_ms(entry_id)
    return (query.since_ms is None or ms >= query.since_ms) and (
        query.until_ms is None or ms <= query.until_ms
    )


class MemoryAdminStore:
    """Implements `AdminStore` in process memory; `books` reads the in-process quota store's."""

    def __init__(self, books: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        self._books = books
        self._state = Snapshot()
        self._hashes: dict[Target, dict[str, str]] = {target: {} for target in TARGETS}
        self._audit: list[tuple[str, dict[str, Any]]] = []
        self._deliveries: deque[dict[str, Any]] = deque(maxlen=DELIVERIES_KEPT)
        self._used: dict[str, float] = {}
        self._changed = asyncio.Event()

    async def snapshot(self) -> Snapshot:
        return self._state

    async def generation(self) -> int:
        return self._state.generation

    async def apply(self, change: Change, read: int, now: float) -> str | None:
        if read != self._state.generation:
            return None
        fields = self._hashes[change.target]
        if change.value is None:
            fields.pop(change.field, None)
        else:
            fields[change.field] = change.value
        self._state = snapshot_of(read + 1, self._hashes)
        entry_id = await self.record(change.audit, now)
        self._changed.set()
        return entry_id

    async def record(self, entry: Mapping[str, Any], now: float) -> str:
        entry_id = _entry_id(now, len(self._audit))
        self._audit.append((entry_id, dict(entry)))
        return entry_id

    async def wait_for_change(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._changed.wait(), seconds)
        except TimeoutError:
            return False
        self._changed.clear()
        return True

    async def listen_again(self) -> None:
        return None

    async def audit(self, query: AuditQuery) -> list[dict[str, Any]]:
        out = []
        for entry_id, entry in reversed(self._audit):
            if query.before is not None and _id_order(entry_id) >= _id_order(query.before):
                continue
            if _in_range(query, entry_id) and query.matches(entry):
                out.append({"id": entry_id, **entry})
            if len(out) >= query.limit:
                break
        return out

    async def last_used(self) -> dict[str, float]:
        return dict(self._used)

    async def mark_used(self, seen: Mapping[str, float]) -> None:
        for key_id, when in seen.items():
            self._used[key_id] = max(when, self._used.get(key_id, 0.0))

    async def read_books(self, keys: Sequence[str]) -> list[dict[str, int]]:
        books = self._books()
        return [dict(books.get(key, {})) for key in keys]

    async def books(self, by: By, stamp: str) -> Books:
        pattern = book_pattern(by, stamp)
        out: Books = {}
        for key, fields in self._books().items():
            book = parse_book_key(key, stamp) if fnmatch.fnmatchcase(key, pattern) else None
            if book is not None and (book.user is None) == (by == "team"):
                out[book] = dict(fields)
        return out

    async def record_delivery(self, entry: Mapping[str, Any]) -> None:
        self._deliveries.appendleft(dict(entry))

    async def deliveries(self, webhook: str | None, limit: int) -> list[dict[str, Any]]:
        found = (e for e in self._deliveries if webhook is None or e.get("webhook") == webhook)
        return list(itertools.islice(found, limit))

    async def close(self) -> None:
        return None


class RedisAdminStore:
    """Implements `AdminStore` on the state Redis; driver errors become `StoreError`."""

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self._redis = client
        self._apply = client.register_script(lua("admin_apply.lua"))
        self._mark_used = client.register_script(lua("last_used.lua"))
        self._pubsub: Any = None

    async def snapshot(self) -> Snapshot:
        pipe = self._redis.pipeline(transaction=True)  # one consistent read
        pipe.get(admin_key("generation"))
        for target in TARGETS:
            pipe.hgetall(admin_key(target))
        generation, *hashes = await call(pipe.execute())
        decoded = {
            target: {k.decode(): v for k, v in fields.items()}
            for target, fields in zip(TARGETS, hashes, strict=True)
        }
        return snapshot_of(int(generation or 0), decoded)

    async def generation(self) -> int:
        return int(await call(self._redis.get(admin_key("generation"))) or 0)

    async def apply(self, change: Change, read: int, now: float) -> str | None:
        keep_from = int((now - AUDIT_DAYS * 86_400) * 1000)
        keys = [admin_key("generation"), admin_key(change.target), AUDIT]
        args: list[Any] = [
            read,
            change.field,
            change.value or "",
            orjson.dumps(change.audit),
            keep_from,
        ]
        reply = await call(self._apply(keys=keys, args=[*args, CHANNEL]))
        return reply[1].decode() if isinstance(reply, list) else None

    async def record(self, entry: Mapping[str, Any], now: float) -> str:
        keep_from = int((now - AUDIT_DAYS * 86_400) * 1000)
        fields = {"entry": orjson.dumps(entry)}
        added = await call(
            self._redis.xadd(AUDIT, fields, minid=keep_from, approximate=True)  # type: ignore[arg-type]
        )
        return added.decode() if isinstance(added, bytes) else str(added)

    async def wait_for_change(self, seconds: float) -> bool:
        try:
            if self._pubsub is None:
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(CHANNEL)
            message = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=seconds
            )
        except (RedisError, OSError):
            await self._drop_pubsub()  # Redis is away: poll, and subscribe again later
            await asyncio.sleep(seconds)
            return False
        return message is not None

    async def listen_again(self) -> None:
        await self._drop_pubsub()

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:  # closing a silent connection must not hang either
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(pubsub.aclose(), 1.0)

    async def audit(self, query: AuditQuery) -> list[dict[str, Any]]:
        high = f"({query.before}" if query.before else "+"
        if query.until_ms is not None and not query.before:
            high = str(query.until_ms)
        low = str(query.since_ms) if query.since_ms is not None else "-"
        out: list[dict[str, Any]] = []
        for _ in range(_SCAN_LIMIT // _SCAN_BATCH):
            batch = await call(self._redis.xrevrange(AUDIT, high, low, count=_SCAN_BATCH))
            for raw_id, fields in batch:
                entry_id, entry = raw_id.decode(), orjson.loads(fields[b"entry"])
                if _in_range(query, entry_id) and query.matches(entry):
                    out.append({"id": entry_id, **entry})
                if len(out) >= query.limit:
                    return out
            if len(batch) < _SCAN_BATCH:
                break
            high = "(" + batch[-1][0].decode()
        return out

    async def last_used(self) -> dict[str, float]:
        raw = await call(self._redis.hgetall(admin_key("last-used")))
        return {k.decode(): float(v) for k, v in raw.items()}

    async def mark_used(self, seen: Mapping[str, float]) -> None:
        if seen:
            args = [part for key_id, when in seen.items() for part in (key_id, repr(when))]
            await call(self._mark_used(keys=[admin_key("last-used")], args=args))

    async def read_books(self, keys: Sequence[str]) -> list[dict[str, int]]:
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        values = await call(pipe.execute()) if keys else []
        return [{f.decode(): int(v) for f, v in fields.items()} for fields in values]

    async def books(self, by: By, stamp: str) -> Books:
        # A SCAN of the keyspace: finance reads a month once, no request ever waits on it.
        found: list[str] = []
        try:
            async for key in self._redis.scan_iter(match=book_pattern(by, stamp), count=1000):
                found.append(key.decode())
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis: {type(exc).__name__}") from exc
        books = [(parse_book_key(key, stamp), key) for key in found]
        wanted = [(b, k) for b, k in books if b is not None and (b.user is None) == (by == "team")]
        pipe = self._redis.pipeline(transaction=False)
        for _, key in wanted:
            pipe.hgetall(key)
        values = await call(pipe.execute()) if wanted else []
        return {
            book: {f.decode(): int(v) for f, v in fields.items()}
            for (book, _), fields in zip(wanted, values, strict=True)
            if book is not None
        }

    async def record_delivery(self, entry: Mapping[str, Any]) -> None:
        fields: dict[Any, Any] = {"entry": orjson.dumps(entry)}
        await call(self._redis.xadd(DELIVERIES, fields, maxlen=DELIVERIES_KEPT, approximate=True))

    async def deliveries(self, webhook: str | None, limit: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        high = "+"
        for _ in range(_SCAN_LIMIT // _SCAN_BATCH):
            batch = await call(self._redis.xrevrange(DELIVERIES, high, "-", count=_SCAN_BATCH))
            for _, fields in batch:
                entry = orjson.loads(fields[b"entry"])
                if webhook is None or entry.get("webhook") == webhook:
                    out.append(entry)
                if len(out) >= limit:
                    return out
            if len(batch) < _SCAN_BATCH:
                break
            high = "(" + batch[-1][0].decode()
        return out

    async def close(self) -> None:
        await self._drop_pubsub()
        await self._redis.aclose()
