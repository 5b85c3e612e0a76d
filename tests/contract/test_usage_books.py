"""The chargeback books every store backend keeps: moved by the quota scripts themselves."""

from __future__ import annotations

import pytest

from gateway.admin.store import AdminStore
from gateway.auth.base import Identity
from gateway.quota.books import book_keys
from gateway.quota.calendar import Calendar
from gateway.quota.counters import request_cost
from gateway.quota.ledger import QuotaLedger
from gateway.settings.config import DALL_E_2_PRICES, parse_config
from gateway.store.base import Store
from gateway.vocabulary import Size, Unit

pytestmark = pytest.mark.anyio
ALICE = Identity("alice", "vision")
RULES = {"default": [{"unit": "images", "limit": 5, "window": "day"}]}


def cost(n: int, size: Size) -> dict[Unit, int]:
    """What a request of `n` images at `size` reserves at dall-e-2's list price."""
    return request_cost(n, DALL_E_2_PRICES[size])


async def read(books: AdminStore, store: Store) -> list[dict[str, int]]:
    month = Calendar().span("month", store.clock()).stamp
    return await books.read_books(book_keys("alice", "vision", month))


async def test_books_hold_the_charge_minus_the_refund(store: Store, books: AdminStore) -> None:
    """A request of 3 that delivered 2: the user's and the team's books say 1 request,
    2 images and their price, like the counters."""
    ledger = QuotaLedger(parse_config({"quotas": RULES}).quotas, store)
    reservation = await ledger.reserve(ALICE, cost(3, "256x256"))
    await ledger.settle(reservation, delivered=2, asked=3)
    expected = {"requests": 1, "images": 2, "usd_micros": 32_000}
    assert await read(books, store) == [expected, expected]
    assert [s.used for s in await ledger.states(ALICE)] == [2]


async def test_a_refused_request_books_nothing_and_a_hit_books_one(
    store: Store, books: AdminStore
) -> None:
    """Over the limit: nothing booked; a hit books its charged units and one cache hit; a
    coalesced answer settles as a hit; a refund never applies twice."""
    ledger = QuotaLedger(parse_config({"quotas": RULES}).quotas, store)
    with pytest.raises(Exception, match="Quota"):
        await ledger.reserve(ALICE, cost(6, "256x256"))
    assert await read(books, store) == [{}, {}]
    await ledger.reserve(ALICE, cost(2, "256x256"), units=("requests",))
    coalesced = await ledger.reserve(ALICE, cost(2, "256x256"))
    await ledger.settle_as_hit(coalesced, ("requests",))
    await ledger.settle_as_hit(coalesced, ("requests",))
    expected = {"requests": 2, "images": 0, "usd_micros": 0, "cache_hits": 2}
    assert await read(books, store) == [expected, expected]
