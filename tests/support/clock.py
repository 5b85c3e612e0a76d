"""Test time that never depends on the day the suite runs.

Redis expires keys on its own real clock, so an injected clock must never stand in the
past: every instant here is computed from now. `EPOCH` is the first instant of the UTC
month after next, a minute, hour, day and month boundary at least a month ahead; set
`GATEWAY_TEST_EPOCH` (ISO 8601, UTC: a minute boundary in the future) to run the suite
from another one.

`WindowSafeClock` runs at real speed from a point just past a minute boundary in the
middle of a month (`MID_WINDOW`), so a test that takes less than a minute never sees a
window roll over, whatever the time of day.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


def _month_after_next(now: float) -> float:
    today = datetime.fromtimestamp(now, UTC)
    months = today.year * 12 + today.month - 1 + 2
    return datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC).timestamp()


def _epoch(now: float) -> float:
    chosen = os.environ.get("GATEWAY_TEST_EPOCH")
    if not chosen:
        return _month_after_next(now)
    epoch = datetime.fromisoformat(chosen).replace(tzinfo=UTC).timestamp()
    if epoch <= now + 3600 or epoch % 60:
        raise ValueError(f"GATEWAY_TEST_EPOCH={chosen}: a minute boundary over an hour ahead")
    return epoch


EPOCH = _epoch(time.time())
# 14 days, 12 h, 30 min and 1 s in: far from every boundary but the next minute's.
MID_WINDOW = EPOCH + timedelta(days=14, hours=12, minutes=30, seconds=1).total_seconds()


class FakeClock:
    """A clock tests move by hand, so windows roll over without sleeping."""

    def __init__(self, now: float = EPOCH + 30) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WindowSafeClock:
    """Real time, shifted so that it reads `start` at construction and runs on from there."""

    def __init__(self, start: float = MID_WINDOW) -> None:
        self._offset = start - time.time()

    def __call__(self) -> float:
        return time.time() + self._offset


def wait_clear_of_day_edge(margin_seconds: float = 120.0, zone: str = "UTC") -> None:
    """Sleep past the next midnight of `zone` if it is under `margin_seconds` away.

    Gateway processes decide windows on Redis's real clock, which no test can move; the
    longest window a live test counts in rolls over at a day boundary (months and years
    end on one too), so a live test started here never sees one roll over.
    """
    now = datetime.now(ZoneInfo(zone))
    following = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
    wait = following.timestamp() - now.timestamp()
    if wait < margin_seconds:
        time.sleep(wait + 1)


def next_offset_change(zone: str, after: float) -> float:
    """The first instant after `after` at which `zone`'s UTC offset changes (a daylight-saving
    change), found by the hour and narrowed to the second; at most two years ahead."""
    tz = ZoneInfo(zone)

    def offset(moment: float) -> timedelta | None:
        return datetime.fromtimestamp(moment, tz).utcoffset()

    start, step = offset(after), 3600.0
    low = after
    while offset(low + step) == start:
        low += step
        if low > after + 2 * 366 * 86_400:
            raise ValueError(f"{zone} has no offset change within two years")
    high = low + step
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if offset(middle) == start else (low, middle)
    return high


def local_month_start(zone: str, after: float) -> float:
    """The first instant of the first month of `zone` that begins after `after`."""
    moment = datetime.fromtimestamp(after, ZoneInfo(zone))
    months = moment.year * 12 + moment.month
    first = datetime(months // 12, months % 12 + 1, 1, tzinfo=ZoneInfo(zone))
    return first.timestamp()
