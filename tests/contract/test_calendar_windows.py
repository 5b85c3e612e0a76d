"""Quota windows and books in the company's time zone, on every store backend: across a
local month end and a daylight-saving change with the injected clock, and on Redis's own
clock when the gateway's estimate of it is stale."""

from __future__ import annotations

import time

import pytest
from support.clock import EPOCH, FakeClock, local_month_start, next_offset_change

from gateway.admin.store import AdminStore
from gateway.auth.base import Identity
from gateway.errors import QuotaExceeded
from gateway.quota.books import book_keys
from gateway.quota.calendar import Calendar
from gateway.quota.counters import request_cost
from gateway.quota.ledger import QuotaLedger
from gateway.settings.config import parse_config
from gateway.store.base import Store

pytestmark = pytest.mark.anyio
ALICE = Identity("alice", "vision")


def _ledger(store: Store, zone: str, window: str, limit: int) -> QuotaLedger:
    rules = [{"unit": "images", "limit": limit, "window": window}]
    config = parse_config({"quotas": {"timezone": zone, "default": rules}})
    return QuotaLedger(config.quotas, store)


async def _images(books: AdminStore, stamp: str) -> int:
    """alice's images in the books of the month or day `stamp`."""
    user, _ = await books.read_books(book_keys("alice", "vision", stamp))
    return user.get("images", 0)


async def test_a_new_york_month_ends_at_new_york_midnight(
    store: Store, clock: FakeClock, books: AdminStore
) -> None:
    """One second before New York's month ends (UTC is already in the new month) and one
    second after: two local months, so the second charge finds a fresh monthly allowance,
    and each month's and each day's books hold their own charge."""
    first = local_month_start("America/New_York", EPOCH)
    clock.now = first - 1
    ledger = _ledger(store, "America/New_York", "month", 5)
    ending = await ledger.reserve(ALICE, request_cost(3, 0.02))
    clock.advance(2)
    starting = await ledger.reserve(ALICE, request_cost(3, 0.02))
    assert ending.counters[0].end == starting.counters[0].start == first
    calendar = Calendar("America/New_York")
    old, new = calendar.span("month", first - 1), calendar.span("month", first)
    assert [await _images(books, old.stamp), await _images(books, new.stamp)] == [3, 3]
    yesterday, today = calendar.span("day", first - 1), calendar.span("day", first)
    assert [await _images(books, yesterday.stamp), await _images(books, today.stamp)] == [3, 3]


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
async def test_a_day_with_a_daylight_saving_change_is_one_window(
    store: Store, clock: FakeClock, zone: str
) -> None:
    """On the local day the clocks change, a daily allowance lasts from local midnight to
    local midnight (23 or 25 hours): spent just after it starts, it is still spent a second
    before it ends, and whole again a second after."""
    day = Calendar(zone).span("day", next_offset_change(zone, EPOCH))
    clock.now = day.start + 1
    ledger = _ledger(store, zone, "day", 3)
    await ledger.reserve(ALICE, request_cost(3, 0.02))
    clock.now = day.end - 1
    with pytest.raises(QuotaExceeded) as refused:
        await ledger.reserve(ALICE, request_cost(1, 0.02))
    assert refused.value.headers["retry-after"] == "1"
    clock.now = day.end + 1
    fresh = await ledger.reserve(ALICE, request_cost(3, 0.02))
    assert fresh.counters[0].start == day.end


@pytest.mark.redis
async def test_a_stale_estimate_of_redis_clock_is_corrected_in_a_zone(clean_redis: str) -> None:
    """A gateway whose estimate of Redis's clock is a day behind computes yesterday's local
    windows; the script refuses to decide on them and says its time, and the charge lands
    in the window of Redis's own clock: today's local day, in the counters and the books."""
    from support.clock import wait_clear_of_day_edge

    from gateway.store.connect import connect
    from gateway.store.redis import RedisStore

    zone = "Pacific/Kiritimati"  # UTC+14: its local day is rarely UTC's
    wait_clear_of_day_edge(zone=zone)
    store = RedisStore(connect(clean_redis))
    store._offset = -86_400.0  # as a host clock a day slow, before any correction
    ledger = _ledger(store, zone, "day", 10)
    try:
        reservation = await ledger.reserve(ALICE, request_cost(2, 0.02))
        assert abs(store.clock("q") - time.time()) < 5  # corrected from the script's answer
    finally:
        await store.close()
    today = Calendar(zone).span("day", time.time())
    assert reservation.counters[0].key.endswith(":images:day:" + today.stamp)
    assert reservation.usage is not None
    assert reservation.usage.keys[2:] == book_keys("alice", "vision", today.stamp)
