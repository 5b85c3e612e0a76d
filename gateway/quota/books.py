"""Usage for chargeback: per user and per team, per calendar month and per day of the
company's time zone (`quotas.timezone`), kept over 13 months.

The books are Redis hashes (fields `requests`, `images`, `usd_micros`, `cache_hits`) that
the quota scripts move in the same atomic step as the quota counters: a request's usage is
what its reservation charged minus what its settlement gave back, so the books and the
quotas can never disagree. A cache hit books the units it is charged (`hits_count_against`)
and one `cache_hits`; the books do not depend on which quota rules exist. A step moves four
books: the user's and the team's month, and their day. It names the local day it books
into, and the script books nothing (answering `clock`) unless the store's own clock is in
that day, so a request at a day's or month's edge is booked where the counters say it was.

Each amount is booked twice in the same hash: in the owner's total field, and in the field
of the endpoint and model that spent it (`usd_micros|generations|gpt-image-2`), so the
books split by endpoint and model (`endpoints` of a row, the export's `--split`) and the
totals stay what they were.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Literal, NamedTuple

from gateway.quota.calendar import Calendar
from gateway.quota.counters import QUOTA_TAG
from gateway.store.base import UsageCharge, make_key

By = Literal["team", "user"]
FIELDS = ("requests", "images", "usd_micros", "cache_hits")
BOOK_SECONDS = 400 * 86_400  # after the month ends: 13 months and more for finance
_UNIT_FIELD = {"requests": "requests", "images": "images", "usd": "usd_micros"}
FIELD_UNIT = {field: unit for unit, field in _UNIT_FIELD.items()}
SPLIT = "|"  # between a field, an endpoint and a model (no model name has one)


def tagged(amounts: Mapping[str, int], endpoint: str, model: str) -> dict[str, int]:
    """`amounts` (by book field), and each again under its `endpoint` and `model`."""
    if not endpoint:
        return dict(amounts)
    suffix = f"{SPLIT}{endpoint}{SPLIT}{model}"
    return {**amounts, **{field + suffix: amount for field, amount in amounts.items()}}


def base_field(field: str) -> str:
    """The total field a (maybe tagged) book field counts towards."""
    return field.partition(SPLIT)[0]


def book_keys(user: str, team: str, stamp: str) -> tuple[str, str]:
    """The user's and the team's books of a month (`YYYYMM`) or a day (`YYYYMMDD`), in the
    quota counters' slot (the scripts move them in one step):
    `gw:v1:usage:{q}:user:<stamp>:{<team>}:<user>` and `gw:v1:usage:{q}:team:<stamp>:{<team>}`.
    Names hold no braces, so the team's own pair delimits it (only a key's first pair
    picks its slot)."""
    team_part = "{" + team + "}"
    return (
        make_key("usage", QUOTA_TAG, "user", stamp, team_part, user),
        make_key("usage", QUOTA_TAG, "team", stamp, team_part),
    )


def usage_charge(
    user: str,
    team: str,
    now: float,
    units: Mapping[str, int],
    calendar: Calendar,
    spent_on: tuple[str, str] = ("", ""),
) -> UsageCharge:
    """The books a step moves for `user` of `team` at `now` (their month's and their day's,
    on `calendar`): `units` are quota units (requests, images, usd in micro-dollars) or
    `cache_hits`, booked also under `spent_on` (endpoint, model) when given."""
    amounts = {_UNIT_FIELD.get(unit, unit): amount for unit, amount in units.items()}
    amounts = tagged(amounts, *spent_on)
    month, day = calendar.span("month", now), calendar.span("day", now)
    keys = book_keys(user, team, month.stamp) + book_keys(user, team, day.stamp)
    return UsageCharge(keys, amounts, int(month.end) + BOOK_SECONDS, (day.start, day.end))


def book_pattern(by: By, stamp: str) -> str:
    """A SCAN pattern matching every book of `by` for the month `stamp`."""
    return make_key("usage", QUOTA_TAG, by, stamp, "*")


class Book(NamedTuple):
    """Whose books a key holds."""

    team: str
    user: str | None  # None: the team's own


def owner_key(book: Book, stamp: str) -> str:
    """The key of `book`'s owner for the month or day `stamp`."""
    user, team = book_keys(book.user or "", book.team, stamp)
    return user if book.user is not None else team


def parse_book_key(key: str, stamp: str) -> Book | None:
    """The owner of a usage key of month `stamp`, or None if it is not one."""
    for by in ("team", "user"):
        head = make_key("usage", QUOTA_TAG, by, stamp, "{")
        if key.startswith(head) and "}" in key[len(head) :]:
            team, _, rest = key[len(head) :].partition("}")
            if by == "team" and not rest and team:
                return Book(team, None)
            if by == "user" and team and rest.startswith(":") and len(rest) > 1:
                return Book(team, rest[1:])
    return None


def rows(
    books: Mapping[Book, Mapping[str, int]], day: str | None = None
) -> list[dict[str, object]]:
    """One row per book, ordered by team then user: counts, and usd in dollars (each row
    naming `day`, `YYYY-MM-DD`, when given)."""
    out: list[dict[str, object]] = []
    for book in sorted(books, key=lambda b: (b.team, b.user or "")):
        fields = books[book]
        row: dict[str, object] = {} if day is None else {"day": day}
        row["team"] = book.team
        if book.user is not None:
            row["user"] = book.user
        row.update(_amounts(fields, ""))
        row["endpoints"] = _endpoints(fields)
        out.append(row)
    return out


def _amounts(fields: Mapping[str, int], suffix: str) -> dict[str, object]:
    return {
        "requests": fields.get("requests" + suffix, 0),
        "images": fields.get("images" + suffix, 0),
        "usd": fields.get("usd_micros" + suffix, 0) / 1_000_000,
        "cache_hits": fields.get("cache_hits" + suffix, 0),
    }


def _endpoints(fields: Mapping[str, int]) -> list[dict[str, object]]:
    """A book's amounts by endpoint and model, ordered by them."""
    spent_on = sorted({tuple(f.split(SPLIT, 2)[1:]) for f in fields if f.count(SPLIT) == 2})
    return [
        {
            "endpoint": endpoint,
            "model": model,
            **_amounts(fields, f"{SPLIT}{endpoint}{SPLIT}{model}"),
        }
        for endpoint, model in spent_on
    ]


def to_csv(
    data: Iterable[Mapping[str, object]], by: By, daily: bool = False, split: bool = False
) -> str:
    """The rows as CSV with a header, as finance's spreadsheets open it (a `day` column
    first for daily rows); `split`: a line per endpoint and model of each row, with those
    two columns."""
    columns = [*(["day"] if daily else []), "team", *(["user"] if by == "user" else [])]
    if split:
        columns += ["endpoint", "model"]
        data = [{**row, **part} for row in data for part in _parts(row)]
    columns += ["requests", "images", "usd"]
    columns.append("cache_hits")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in data:
        cells = {name: _cell(value) for name, value in row.items()}
        writer.writerow({**cells, "usd": f"{float(str(row['usd'])):.6f}"})
    return out.getvalue()


def _parts(row: Mapping[str, object]) -> list[Mapping[str, object]]:
    """A row's split by endpoint and model (`rows`' `endpoints`)."""
    parts = row.get("endpoints")
    return [part for part in parts if isinstance(part, Mapping)] if isinstance(parts, list) else []


def _cell(value: object) -> object:
    # A name starting like a formula would run as one in the spreadsheet that opens it.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
