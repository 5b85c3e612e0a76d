"""Usage for chargeback: per user and per team, per UTC calendar month, kept over 13 months.

The books are Redis hashes (fields `requests`, `images`, `usd_micros`, `cache_hits`) that
the quota scripts move in the same atomic step as the quota counters: a request's usage is
what its reservation charged minus what its settlement gave back, so the books and the
quotas can never disagree. A cache hit books the units it is charged (`hits_count_against`)
and one `cache_hits`; the books do not depend on which quota rules exist.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from gateway.quota.counters import QUOTA_TAG, window_bounds
from gateway.store.base import UsageCharge, make_key

By = Literal["team", "user"]
FIELDS = ("requests", "images", "usd_micros", "cache_hits")
BOOK_SECONDS = 400 * 86_400  # after the month ends: 13 months and more for finance
_UNIT_FIELD = {"requests": "requests", "images": "images", "usd": "usd_micros"}


def month_stamp(now: float) -> str:
    """The `YYYYMM` of the UTC month holding `now`."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m")


def book_keys(user: str, team: str, stamp: str) -> tuple[str, str]:
    """The user's and the team's books of a month, in the quota counters' slot (the scripts
    move both in one step): `gw:v1:usage:{q}:user:<YYYYMM>:{<team>}:<user>` and
    `gw:v1:usage:{q}:team:<YYYYMM>:{<team>}`. Names hold no braces, so the team's own pair
    delimits it (only a key's first pair picks its slot)."""
    team_part = "{" + team + "}"
    return (
        make_key("usage", QUOTA_TAG, "user", stamp, team_part, user),
        make_key("usage", QUOTA_TAG, "team", stamp, team_part),
    )


def usage_charge(user: str, team: str, now: float, units: Mapping[str, int]) -> UsageCharge:
    """The books a step moves for `user` of `team` at `now`: `units` are quota units
    (requests, images, usd in micro-dollars) or `cache_hits`."""
    amounts = {_UNIT_FIELD.get(unit, unit): amount for unit, amount in units.items()}
    _, end = window_bounds("month", now)
    return UsageCharge(book_keys(user, team, month_stamp(now)), amounts, int(end) + BOOK_SECONDS)


def book_pattern(by: By, stamp: str) -> str:
    """A SCAN pattern matching every book of `by` for the month `stamp`."""
    return make_key("usage", QUOTA_TAG, by, stamp, "*")


class Book(NamedTuple):
    """Whose books a key holds."""

    team: str
    user: str | None  # None: the team's own


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


def rows(books: Mapping[Book, Mapping[str, int]]) -> list[dict[str, object]]:
    """One row per book, ordered by team then user: counts, and usd in dollars."""
    out: list[dict[str, object]] = []
    for book in sorted(books, key=lambda b: (b.team, b.user or "")):
        fields = books[book]
        row: dict[str, object] = {"team": book.team}
        if book.user is not None:
            row["user"] = book.user
        row.update(
            requests=fields.get("requests", 0),
            images=fields.get("images", 0),
            usd=fields.get("usd_micros", 0) / 1_000_000,
            cache_hits=fields.get("cache_hits", 0),
        )
        out.append(row)
    return out


def to_csv(data: Iterable[Mapping[str, object]], by: By) -> str:
    """The rows as CSV with a header, as finance's spreadsheets open it."""
    columns = ["team", *(["user"] if by == "user" else []), "requests", "images", "usd"]
    columns.append("cache_hits")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in data:
        cells = {name: _cell(value) for name, value in row.items()}
        writer.writerow({**cells, "usd": f"{float(str(row['usd'])):.6f}"})
    return out.getvalue()


def _cell(value: object) -> object:
    # A name starting like a formula would run as one in the spreadsheet that opens it.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
