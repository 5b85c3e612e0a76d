"""The quota ledger's books, checked from outside: what the upstream did and what callers
received, against what Redis holds.

`Tally` records every answer callers saw (status, images, how it was served, whether it
was metered); the fake upstream records every call it got and what it made
(`Received.produced`). `quota_counters` reads the counters straight from Redis, without
asking the gateway. `assert_balanced` says they agree, by SPEC 6.2's rule that the charge
follows what the upstream did, not whether the caller stayed: every call the upstream got
costs its request unit and the images it made (all it was asked for when its answer was
lost: the default `upstream.on_timeout: keep_charge`), whether its caller waited or not; a
cache hit (or coalesced answer) costs only `hits_count_against`; anything refused or never
sent costs nothing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import redis

from support import exposure
from support.config import TEAMS, USER_SECRET, base_config, merged
from support.fake_upstream import Received

PRICES = {"256x256": 0.016, "512x512": 0.018, "1024x1024": 0.020}
USD_SCALE = 1_000_000  # the gateway counts usd in micro-dollars
SETTLE_SECONDS = 3.0  # how long a background settlement may take to land
# One rule per unit, per user and per team: generous, so that only faults refuse.
LEDGER_QUOTAS: dict[str, Any] = {
    "default": [
        {"unit": "requests", "limit": 1_000_000, "window": "day"},
        {"unit": "images", "limit": 1_000_000, "window": "day"},
    ],
    "teams": {
        team: [{"unit": "usd", "limit": 1_000_000.0, "window": "month"}]
        for team in sorted(set(TEAMS.values()))
    },
}


def ledger_config(upstream_url: str, **sections: Any) -> dict[str, Any]:
    """The test config with `LEDGER_QUOTAS`, plus `sections` merged in."""
    return merged(base_config(upstream_url), {"quotas": LEDGER_QUOTAS, **sections})


@dataclass(frozen=True)
class Seen:
    """One answer as its caller saw it (status 0: no HTTP answer at all)."""

    user: str
    size: str
    status: int
    images: int = 0
    cache: str | None = None
    metered: bool = False
    code: str | None = None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased names


def seen_from(user: str, size: str, status: int, headers: Mapping[str, str], body: bytes) -> Seen:
    """A `Seen` from a raw answer: images counted from `data`, metered if it carries quota
    headers (fail_open admits unmetered without them)."""
    images, code = 0, None
    try:
        decoded = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict):
        if status == 200 and isinstance(decoded.get("data"), list):
            images = len(decoded["data"])
        error = decoded.get("error")
        if isinstance(error, dict):
            code = error.get("code")
    lowered = {k.lower(): v for k, v in headers.items()}
    metered = any(name.startswith("x-ratelimit-limit-") for name in lowered)
    cache = lowered.get("x-gateway-cache")
    return Seen(user, size, status, images, cache, metered, code, body, lowered)


def seen_of(response: Any, user: str = "alice", size: str = "1024x1024") -> Seen:
    """A `Seen` from an httpx (or test client) response to `user` asking for `size`."""
    return seen_from(user, size, response.status_code, response.headers, response.content)


@dataclass
class Tally:
    """Every answer callers saw, thread- and task-safe to append to."""

    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, item: Seen) -> Seen:
        if item.status >= 400:
            exposure.record(f"{item.status} error body", item.body)
        with self._lock:
            self.seen.append(item)
        return item

    def statuses(self) -> Counter[int]:
        return Counter(item.status for item in self.seen)

    def codes(self) -> Counter[str | None]:
        return Counter(item.code for item in self.seen if item.status != 200)

    def images(self) -> int:
        return sum(item.images for item in self.seen)


Books = dict[tuple[str, str, str], int]  # (scope, subject, unit) -> stored amount


class Primaries(Protocol):
    """A Redis topology of several servers (support/redis_topologies.py)."""

    def primary_clients(self) -> list[redis.Redis]: ...


def quota_counters(source: str | Primaries) -> Books:
    """Every quota counter in Redis (a URL, or every primary of a topology), summed over
    windows, by (scope, subject, unit)."""
    books: Books = defaultdict(int)
    clients = (
        [redis.Redis.from_url(source)] if isinstance(source, str) else source.primary_clients()
    )
    for client in clients:
        with client:
            for key in client.scan_iter(match="gw:v1:quota:*", count=1000):
                # gw:v1:quota:{q}:<scope>:<subject>:<unit>:<window>:<stamp>
                parts = key.decode().split(":")
                scope, subject, unit = parts[4], parts[5], parts[6]
                books[(scope, subject, unit)] += int(client.get(key) or 0)
    return {k: v for k, v in books.items() if v}


def _users_by_pseudonym() -> dict[str, str]:
    from gateway.auth.authenticator import pseudonym

    return {pseudonym(USER_SECRET, user): user for user in TEAMS}


def _add(books: Books, user: str, cost: Mapping[str, int], units: tuple[str, ...]) -> None:
    for unit, amount in cost.items():
        if unit in units and amount:
            scope, subject = ("team", TEAMS[user]) if unit == "usd" else ("user", user)
            books[(scope, subject, unit)] += amount


def call_cost(call: Received) -> dict[str, int]:
    """What one upstream call costs: its request, and the images it made (as asked when its
    answer was lost) at the asked size's price."""
    asked = int(call.fields.get("n", "1"))
    images = asked if call.produced is None else min(call.produced, asked)
    price = PRICES[call.fields.get("size", "1024x1024")]
    return {"requests": 1, "images": images, "usd": round(images * price * USD_SCALE)}


def expected_books(
    seen: Iterable[Seen],
    calls: Iterable[Received],
    *,
    hits_count_against: tuple[str, ...] = ("requests",),
    units: tuple[str, ...] = ("requests", "images", "usd"),
) -> Books:
    """What the counters must hold under `LEDGER_QUOTAS` for these upstream calls and answers.

    Calls answered to a caller without quota headers (fail_open admitted them unmetered)
    cost nothing; so do refused requests and callers who left before their request was sent.
    """
    seen = list(seen)
    unmetered = {s.headers.get("x-upstream-request-id") for s in seen if not s.metered}
    users = _users_by_pseudonym()
    books: Books = defaultdict(int)
    for call in calls:
        if call.request_id not in unmetered:
            _add(books, users[call.fields["user"]], call_cost(call), units)
    for item in seen:
        shared = item.cache in ("HIT", "COALESCED")
        if shared and item.status == 200 and item.metered and item.images > 0:
            price = round(item.images * PRICES[item.size] * USD_SCALE)
            cost = {"requests": 1, "images": item.images, "usd": price}
            _add(books, item.user, {u: cost[u] for u in hits_count_against}, units)
    return dict(books)


def assert_balanced(
    source: str | Primaries, seen: Iterable[Seen], calls: Iterable[Received], **options: Any
) -> Books:
    """Redis's counters hold exactly what the upstream did and the hits callers got."""
    expected = expected_books(seen, list(calls), **options)
    deadline = time.monotonic() + SETTLE_SECONDS
    actual = quota_counters(source)
    while actual != expected and time.monotonic() < deadline:
        time.sleep(0.05)  # calls whose callers left settle in the background
        actual = quota_counters(source)
    assert actual == expected, f"charged {actual} != upstream did {expected}"
    return actual
