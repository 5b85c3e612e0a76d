"""The storage interfaces the gateway uses, and the one function that names every key.

Each implementation (memory.py, redis.py) provides exactly these operations. Backend
failures surface as `StoreError`, never as a driver exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

KEY_PREFIX = "gw:v1"
Clock = Callable[[], float]


class StoreError(Exception):
    """The backend could not be reached or answered with an error."""


def make_key(kind: str, tag: str, *rest: str) -> str:
    """A versioned key; `tag` sits in braces so one subject's keys share a Cluster slot."""
    return ":".join((KEY_PREFIX, kind, "{" + tag + "}", *rest))


class ChargeItem(NamedTuple):
    """One counter of a check-and-charge: add `amount` if it stays within `limit`.

    `start`/`end` bound the counter's window; the store refuses to decide when its own
    clock is outside them (the caller computed the window from a stale clock).
    `thresholds` (percents of `limit`) are the counter's alert levels, and `marker` the key
    where the store keeps the highest one already reported in this window.
    """

    key: str
    amount: int
    limit: int
    start: float
    end: float
    thresholds: tuple[int, ...] = ()
    marker: str = ""


class Crossed(NamedTuple):
    """An item whose alert level rose in a charge: from `before` to `level` (percents; 100
    also when the charge was refused by it). Reported to the one charge that moved it."""

    item: int  # its index in the charge
    before: int
    level: int


class Receipt(NamedTuple):
    """Kept by the store for `ttl_ms` after an admitted charge: proof that the charge landed.

    A refund naming the receipt applies only while it is held, and drops it, so a refund
    retried after its reply was lost, or a charge whose reply was lost taken back, applies
    exactly once.
    """

    key: str
    ttl_ms: int


class UsageCharge(NamedTuple):
    """Chargeback books moved in the same atomic step as a charge or refund.

    Each hash in `keys` gets `amounts` (field -> integer) added by a charge, subtracted by
    a refund (never below 0), and is kept until `expire_at` (epoch seconds). A charge books
    only while the store's clock is `within` [start, end) (the period the keys name):
    otherwise it is refused like a charge outside an item's window (None: no such check,
    as for refunds, which go to the books their charge moved).
    """

    keys: tuple[str, ...]
    amounts: Mapping[str, int]
    expire_at: int
    within: tuple[float, float] | None = None


class ChargeOutcome(NamedTuple):
    """What a check-and-charge did, by the store's clock `now`."""

    admitted: bool
    used: list[int]  # per item: after the charge if admitted, else as found
    refused: list[int]  # indexes of the items without room (empty when admitted)
    now: float
    crossed: list[Crossed] = []  # noqa: RUF012 - a NamedTuple default, never mutated


class QuotaStore(Protocol):
    """Integer counters with atomic multi-counter check-and-charge."""

    def clock(self, tag: str = "") -> float:
        """The store's time in epoch seconds for the keys of `tag` (for the Redis store, the
        clock of the node that holds them)."""

    async def charge(
        self,
        items: Sequence[ChargeItem],
        receipt: Receipt | None = None,
        usage: UsageCharge | None = None,
    ) -> ChargeOutcome | None:
        """Atomically: if every item with a positive amount has room, add all (and keep
        `receipt`, and add `usage` to its books); else add none. In the same step, each
        item with thresholds whose alert level rose is reported once in `crossed`.

        Returns None, charging nothing, when the store's clock is outside an item's window;
        `clock()` is then corrected and the caller recomputes its windows. Raises `StoreError`.
        """

    async def refund(
        self,
        items: Sequence[tuple[str, int]],
        receipt: str | None = None,
        usage: UsageCharge | None = None,
    ) -> None:
        """Subtract each amount from its counter if it still exists, never below 0, and
        `usage`'s amounts from its books. Atomic.

        A negative amount adds (a top-up: the real cost was above the reservation). With
        `receipt`: only if that receipt is still held, and it is dropped. Raises `StoreError`.
        """

    async def read(self, keys: Sequence[str]) -> list[int]:
        """Current values (0 for missing counters); raises `StoreError`."""


class CacheStore(Protocol):
    """Cached answers and hosted image files (disposable bytes with a TTL), and short leader
    locks for coalescing identical misses."""

    async def get_entry(self, key: str) -> bytes | None:
        """The live entry, or None; raises `StoreError`."""

    async def put_entry(self, key: str, value: bytes, ttl_seconds: int) -> None:
        """Store an entry for `ttl_seconds`; raises `StoreError`."""

    async def get_or_lock(self, key: str, lock: str, token: str, ttl_ms: int) -> bytes | bool:
        """The live entry of `key`; else take `lock` for `ttl_ms` unless someone holds it:
        True if this call took it, False if another holds it. One atomic step (a miss's
        lookup and its bid to lead, in one round trip); raises `StoreError`."""

    async def put_and_release(
        self, key: str, value: bytes, ttl_seconds: int, lock: str, token: str
    ) -> None:
        """`put_entry`, then `release`, in one atomic step; raises `StoreError`."""

    async def locked(self, lock: str) -> bool:
        """Whether anyone holds `lock`; raises `StoreError`."""

    async def release(self, lock: str, token: str) -> None:
        """Drop `lock` if `token` still holds it (atomic); raises `StoreError`."""

    async def close(self) -> None:
        """Release connections."""


class Store(QuotaStore, Protocol):
    """The gateway's state store."""

    async def ping(self) -> None:
        """Return when the backend answers; raises `StoreError` otherwise."""

    async def close(self) -> None:
        """Release connections."""
