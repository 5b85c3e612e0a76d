"""Usage books: key names, reading them back, and the CSV finance opens."""

from __future__ import annotations

import csv
import io

from gateway.quota.books import Book, book_keys, book_pattern, parse_book_key, rows, to_csv


def test_book_keys_share_the_quota_slot_and_read_back() -> None:
    """Both books of a request sit in the quota counters' slot (one script moves them all),
    and each key names its owner, even names with colons."""
    from redis.crc import key_slot

    user_key, team_key = book_keys("alice", "vision", "202611")
    assert user_key == "gw:v1:usage:{q}:user:202611:{vision}:alice"
    assert team_key == "gw:v1:usage:{q}:team:202611:{vision}"
    assert key_slot(user_key.encode()) == key_slot(b"gw:v1:quota:{q}:user:alice")
    assert parse_book_key(user_key, "202611") == Book("vision", "alice")
    assert parse_book_key(team_key, "202611") == Book("vision", None)
    odd = book_keys("a:b", "t:x", "202611")
    assert [parse_book_key(k, "202611") for k in odd] == [Book("t:x", "a:b"), Book("t:x", None)]
    assert parse_book_key(team_key, "202612") is None
    assert parse_book_key("gw:v1:quota:{q}:team:202611", "202611") is None
    assert book_pattern("team", "202611") == "gw:v1:usage:{q}:team:202611:*"


def test_csv_has_a_header_dollars_and_no_formulas() -> None:
    """Rows become CSV with usd in dollars, and a name a spreadsheet would run is quoted."""
    data = rows({Book("=evil", "bob"): {"requests": 2, "images": 3, "usd_micros": 54_000}})
    parsed = list(csv.DictReader(io.StringIO(to_csv(data, "user"))))
    assert parsed == [
        {"team": "'=evil", "user": "bob", "requests": "2", "images": "3", "usd": "0.054000",
         "cache_hits": "0"}
    ]  # fmt: skip
