"""The usage books as the admin API answers them: a month by owner (team or user), or the
same month day by day, with the current month's projection to its end.

Days and months are the company's (`quotas.timezone`). A month's owners are found by one
SCAN of its monthly books; their daily books are then read by key, one round trip for
every day of every owner, so a daily answer costs the keyspace no second scan.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from gateway.admin.store import AdminStore
from gateway.quota.books import By, owner_key, rows
from gateway.quota.calendar import Calendar, Span
from gateway.quota.forecast import projection


async def month_usage(
    store: AdminStore, calendar: Calendar, by: By, first: date, now: float, daily: bool
) -> dict[str, Any]:
    """The answer of `GET /admin/usage` for the month beginning on `first`; raises
    `StoreError`."""
    month = calendar.span("month", calendar.midnight(first))
    books = await store.books(by, month.stamp)
    answer: dict[str, Any] = {
        "object": "list",
        "month": first.strftime("%Y-%m"),
        "by": by,
        "period": "day" if daily else "month",
        "timezone": calendar.timezone,
        "data": rows(books),
    }
    if month.start <= now < month.end:
        answer["forecast"] = [_forecast(row, month, now) for row in answer["data"]]
    if daily:
        answer["days"], answer["data"] = await _by_day(store, calendar, books, first)
    return answer


def _forecast(row: dict[str, Any], month: Span, now: float) -> dict[str, Any]:
    """An owner's usd and images so far this month, and where they are heading."""
    out: dict[str, Any] = {name: row[name] for name in ("team", "user") if name in row}
    for unit, digits in (("usd", 6), ("images", 1)):
        out[unit] = row[unit]
        out["projected_" + unit] = round(projection(row[unit], month.start, month.end, now), digits)
    return out


async def _by_day(
    store: AdminStore, calendar: Calendar, books: Any, first: date
) -> tuple[list[str], list[dict[str, object]]]:
    """The month's days (`YYYY-MM-DD`) and a row per owner and day with any usage."""
    days = calendar.days(first)
    owners = sorted(books, key=lambda b: (b.team, b.user or ""))
    keys = [owner_key(owner, day.stamp) for day in days for owner in owners]
    values = iter(await store.read_books(keys))
    labels, out = [], []
    for day in days:
        label = f"{day.stamp[:4]}-{day.stamp[4:6]}-{day.stamp[6:]}"
        labels.append(label)
        found = {owner: next(values) for owner in owners}
        out += rows({owner: fields for owner, fields in found.items() if fields}, label)
    return labels, out
