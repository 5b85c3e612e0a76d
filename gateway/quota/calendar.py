"""Quota windows and books periods on the company's calendar (`quotas.timezone`). No I/O.

Minute and hour windows are fixed lengths of time, the same in every zone. Day, week (ISO:
Monday to Sunday) and month windows, and the books' days and months, follow the zone's
wall clock: a day starts at local midnight, so across a daylight-saving change it lasts 23
or 25 hours, and a Berlin month ends at 22:00 or 23:00 UTC. A zone's rules come from the
IANA database (`zoneinfo`: the system's, else the `tzdata` package's).

The bounds are computed here, on the gateway's estimate of the store's clock; the charge
script then checks, on the store's own clock, that the moment it decides at lies inside
every window it was given, and answers `clock` otherwise (the estimate was stale at an
edge): the ledger corrects its estimate and computes the windows again. So the window a
charge lands in is always the one holding the store's own time.

Each window is named by a stamp in its counter's key, in the zone's own terms: day
`20261121`, ISO week `2026W47`, month `202611` (minute and hour stamps are UTC's).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import NamedTuple

from gateway.settings.types import time_zone
from gateway.vocabulary import Window

FIXED_SECONDS: Mapping[Window, int] = {"minute": 60, "hour": 3600}
_FIXED_STAMP: Mapping[Window, str] = {"minute": "%Y%m%d%H%M", "hour": "%Y%m%d%H"}


class Span(NamedTuple):
    """One window: [start, end) in epoch seconds, and its key stamp."""

    start: float
    end: float
    stamp: str


def _first_day(window: Window, day: date) -> date:
    """The first local day of the calendar window (day, week or month) holding `day`."""
    if window == "week":
        return day - timedelta(days=day.weekday())
    if window == "month":
        return day.replace(day=1)
    return day


def _next_first_day(window: Window, first: date) -> date:
    if window == "week":
        return first + timedelta(days=7)
    if window == "month":
        return (first + timedelta(days=32)).replace(day=1)
    return first + timedelta(days=1)


def _stamp(window: Window, first: date) -> str:
    if window == "week":
        year, week, _ = first.isocalendar()
        return f"{year}W{week:02d}"
    return first.strftime("%Y%m" if window == "month" else "%Y%m%d")


class Calendar:
    """The windows of one time zone, each worked out once per window, not per request."""

    def __init__(self, timezone: str = "UTC") -> None:
        self.timezone = timezone
        self._zone = time_zone(timezone)
        self._current: dict[Window, Span] = {}

    def span(self, window: Window, now: float) -> Span:
        """The window holding `now`."""
        span = self._current.get(window)
        if span is None or not span.start <= now < span.end:
            span = self._compute(window, now)
            self._current[window] = span
        return span

    def _compute(self, window: Window, now: float) -> Span:
        size = FIXED_SECONDS.get(window)
        if size is not None:
            start = now - now % size
            stamp = datetime.fromtimestamp(start, UTC).strftime(_FIXED_STAMP[window])
            return Span(start, start + size, stamp)
        first = _first_day(window, datetime.fromtimestamp(now, self._zone).date())
        start, end = self.midnight(first), self.midnight(_next_first_day(window, first))
        return Span(start, end, _stamp(window, first))

    def midnight(self, day: date) -> float:
        """The instant the local `day` begins. Where midnight falls in a daylight-saving
        gap, the day begins at the change (the earlier offset maps the missing time)."""
        return datetime.combine(day, clock_time(0), tzinfo=self._zone).timestamp()

    def local_date(self, now: float) -> date:
        """The local calendar date at `now`."""
        return datetime.fromtimestamp(now, self._zone).date()

    def days(self, month: date) -> list[Span]:
        """Every local day of the month starting at `month` (a first of the month)."""
        out, day = [], month
        while day.month == month.month:
            following = day + timedelta(days=1)
            out.append(Span(self.midnight(day), self.midnight(following), _stamp("day", day)))
            day = following
        return out
