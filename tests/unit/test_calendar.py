"""Quota windows and books periods on the company's calendar: local days, ISO weeks and
months, across daylight-saving changes and month ends, computed from now (never a fixed
date)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.clock import EPOCH, local_month_start, next_offset_change

from gateway.quota.calendar import Calendar
from gateway.settings.config import ConfigError, parse_config
from gateway.vocabulary import WINDOWS

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]


def _local(zone: str, moment: float) -> datetime:
    return datetime.fromtimestamp(moment, ZoneInfo(zone))


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_the_day_of_a_daylight_saving_change_is_one_day_of_23_or_25_hours(zone: str) -> None:
    """The local day holding the next offset change runs from local midnight to local
    midnight: 23 or 25 hours, as the clocks went forward or back, and the next day starts
    where it ends."""
    change = next_offset_change(zone, EPOCH)
    calendar = Calendar(zone)
    day = calendar.span("day", change)
    before, after = _local(zone, change - 1).utcoffset(), _local(zone, change).utcoffset()
    assert before is not None and after is not None
    assert day.end - day.start == 86_400 - (after - before).total_seconds()
    assert _local(zone, day.start).strftime("%H:%M") == "00:00"
    assert calendar.span("day", day.start) == day == calendar.span("day", day.end - 0.001)
    assert calendar.span("day", day.end).start == day.end
    assert day.stamp == _local(zone, change).strftime("%Y%m%d")


def test_a_new_york_month_ends_at_new_york_midnight_not_utc_midnight() -> None:
    """The month after next in New York starts at its local midnight (04:00 or 05:00 UTC):
    the last second before it belongs to the previous local month, whose books stamp it."""
    first = local_month_start("America/New_York", EPOCH)
    calendar = Calendar("America/New_York")
    before, at = calendar.span("month", first - 1), calendar.span("month", first)
    assert before.end == at.start == first
    assert datetime.fromtimestamp(first, ZoneInfo("UTC")).hour in (4, 5)
    assert at.stamp == _local("America/New_York", first).strftime("%Y%m")
    assert before.stamp != at.stamp
    utc = Calendar().span("month", first - 1)
    assert utc.stamp == at.stamp  # in UTC that second is already in the new month


def test_a_week_is_iso_monday_to_sunday_in_the_zone() -> None:
    """A week window starts on a local Monday at midnight, lasts seven local days and is
    stamped with the ISO year and week."""
    calendar = Calendar("Europe/Berlin")
    week = calendar.span("week", EPOCH)
    start = _local("Europe/Berlin", week.start)
    assert (start.weekday(), start.hour, start.minute) == (0, 0, 0)
    assert _local("Europe/Berlin", week.end).date() == start.date() + timedelta(days=7)
    year, number, _ = start.isocalendar()
    assert week.stamp == f"{year}W{number:02d}"


def test_minute_and_hour_windows_are_fixed_lengths_in_any_zone() -> None:
    """In a zone half an hour off UTC, an hour window still runs from one UTC hour to the
    next (a fixed length, like a minute)."""
    hour = Calendar("Asia/Kolkata").span("hour", EPOCH + 90)
    assert (hour.start, hour.end) == (EPOCH, EPOCH + 3600)


def test_the_days_of_a_month_follow_the_zone() -> None:
    """The days of a local month cover it end to end, each from local midnight."""
    calendar = Calendar("America/New_York")
    month = calendar.span("month", EPOCH + 10 * 86_400)
    days = calendar.days(calendar.local_date(month.start))
    assert days[0].start == month.start and days[-1].end == month.end
    assert all(a.end == b.start for a, b in itertools.pairwise(days))
    assert len(days) == _local("America/New_York", month.end - 1).day


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    window=st.sampled_from(WINDOWS),
    offset=st.floats(min_value=0, max_value=4 * 366 * 86_400),
)
def test_windows_tile_time(zone: str, window: str, offset: float) -> None:
    """Any moment lies in exactly one window of each kind: inside its bounds, and the
    window after it starts where it ends."""
    calendar = Calendar(zone)
    now = EPOCH + offset
    span = calendar.span(window, now)  # type: ignore[arg-type]
    assert span.start <= now < span.end
    following = calendar.span(window, span.end)  # type: ignore[arg-type]
    assert following.start == span.end and following.stamp != span.stamp


def test_an_unknown_zone_is_refused_naming_it() -> None:
    """`quotas.timezone` must name a zone of the IANA database; the error says which key."""
    with pytest.raises(ConfigError, match=r"quotas\.timezone: 'Europe/Atlantis' is not an IANA"):
        parse_config({"quotas": {"timezone": "Europe/Atlantis"}})
