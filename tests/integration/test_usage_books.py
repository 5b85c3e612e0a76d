"""Usage for chargeback after a mixed run: the books hold what callers were delivered, and
agree with the quota counters (they move in the same script)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.clock import MID_WINDOW
from support.config import auth
from support.fake_upstream import FakeUpstream, Reply, images_response
from support.ledger import LEDGER_QUOTAS, Seen, Tally, expected_books, quota_counters, seen_of
from support.pngs import make_png
from support.requests import post_variation

from gateway.quota.calendar import Calendar

pytestmark = pytest.mark.redis
ADMIN = auth("grafana")
_STAMP = Calendar().span("month", MID_WINDOW).stamp
MONTH = f"{_STAMP[:4]}-{_STAMP[4:]}"
ONE_IMAGE = {
    "created": 1,
    "data": [{"url": "https://upstream.invalid/a.png?se=2099-01-01T00%3A00%3A00Z"}],
}


def _call(client: TestClient, tally: Tally, user: str, png: bytes, **fields: str) -> Seen:
    response = post_variation(client, user=user, image=png, fields={"size": "256x256", **fields})
    return tally.add(seen_of(response, user, "256x256"))


def _mixed_run(client: TestClient, upstream: FakeUpstream) -> Tally:
    tally = Tally()
    _call(client, tally, "alice", make_png(20), n="2")  # miss
    _call(client, tally, "alice", make_png(20), n="2")  # hit
    _call(client, tally, "bob", make_png(20), n="2")  # hit, another user
    upstream.reply(Reply(status=500, body={"error": {"message": "down", "type": "server_error"}}))
    _call(client, tally, "alice", make_png(21))  # upstream failure: refunded
    upstream.reply(Reply(body=ONE_IMAGE))
    _call(client, tally, "carol", make_png(22), n="3")  # fewer images than asked
    upstream.script = lambda received: Reply(body=images_response(received), delay=0.5)
    with ThreadPoolExecutor(4) as pool:  # identical misses at once: one leads, others coalesce
        list(pool.map(lambda user: _call(client, tally, user, make_png(23)), ["bob"] * 4))
    upstream.script = lambda received: Reply(body=images_response(received))
    _call(client, tally, "carol", make_png(24), n="2")  # miss
    return tally


def _usage(client: TestClient, by: str) -> list[dict[str, Any]]:
    response = client.get(f"/admin/usage?month={MONTH}&by={by}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def test_usage_after_a_mixed_run_is_what_callers_were_delivered(
    make_client: Callable[..., TestClient], upstream: FakeUpstream, clean_redis: str
) -> None:
    """Misses, hits, an upstream failure, fewer images and coalesced answers: each user's
    and each team's books equal what the upstream did and the hits callers got, and what the
    quota counters hold."""
    client = make_client(
        {"quotas": LEDGER_QUOTAS, "cache": {"enabled": True}}, env={"REDIS_URL": clean_redis}
    )
    tally = _mixed_run(client, upstream)
    results = Counter(s.cache for s in tally.seen)
    assert results["HIT"] == 2 and results["COALESCED"] >= 1 and tally.statuses()[502] == 1
    expected = expected_books(tally.seen, upstream.received)
    users = {row["user"]: row for row in _usage(client, "user")}
    for (scope, subject, unit), amount in expected.items():
        if scope == "user":
            assert users[subject][unit] == amount, (subject, unit)
    teams = {row["team"]: row for row in _usage(client, "team")}
    counters = quota_counters(clean_redis)
    for team in ("vision", "audio"):
        assert round(teams[team]["usd"] * 1_000_000) == counters[("team", team, "usd")]
    for user, row in users.items():
        assert row["requests"] == counters.get(("user", user, "requests"), 0)
        assert row["images"] == counters.get(("user", user, "images"), 0)
        hits = sum(s.cache in ("HIT", "COALESCED") for s in tally.seen if s.user == user)
        assert row["cache_hits"] == hits
    assert (
        teams["vision"]["cache_hits"] == users["alice"]["cache_hits"] + users["bob"]["cache_hits"]
    )


def test_usage_is_booked_without_any_quota_rule(client: TestClient) -> None:
    """Chargeback does not depend on quotas: a gateway with no rule still books usage."""
    assert post_variation(client, fields={"n": "2", "size": "512x512"}).status_code == 200
    rows = client.get(f"/admin/usage?month={MONTH}&by=team", headers=ADMIN).json()["data"]
    amounts = {"requests": 1, "images": 2, "usd": 0.036, "cache_hits": 0}
    split = {"endpoint": "variations", "model": "dall-e-2", **amounts}
    assert rows == [{"team": "vision", **amounts, "endpoints": [split]}]
    assert client.get("/admin/usage?month=1999-01", headers=ADMIN).json()["data"] == []


def test_daily_books_sit_on_the_company_day_and_add_up_to_the_month(
    make_client: Callable[..., TestClient],
) -> None:
    """With the company in UTC+14, a call made mid-month (UTC) is booked on the next local
    day; the daily rows add up to the month's, every day of the month is listed, and the
    current month's forecast continues its run rate to the local month's end."""
    zone = "Pacific/Kiritimati"
    client = make_client({"quotas": {"timezone": zone}})
    for n in ("1", "2"):
        assert post_variation(client, fields={"n": n, "size": "256x256"}).status_code == 200
    calendar = Calendar(zone)
    local = calendar.local_date(MID_WINDOW)
    month = local.strftime("%Y-%m")
    answer = client.get(f"/admin/usage?month={month}&by=user&period=day", headers=ADMIN).json()
    assert answer["timezone"] == zone and answer["period"] == "day"
    assert len(answer["days"]) == len(calendar.days(local.replace(day=1)))
    amounts = {"requests": 2, "images": 3, "usd": 0.048, "cache_hits": 0}
    split = [{"endpoint": "variations", "model": "dall-e-2", **amounts}]
    assert answer["data"] == [
        {"day": local.isoformat(), "team": "vision", "user": "alice", **amounts, "endpoints": split}
    ]
    assert local != Calendar().local_date(MID_WINDOW)  # UTC's day is another one
    span = calendar.span("month", MID_WINDOW)
    (forecast,) = answer["forecast"]
    elapsed = (MID_WINDOW - span.start) / (span.end - span.start)
    assert forecast["projected_usd"] == pytest.approx(0.048 / elapsed, rel=1e-3)
    monthly = client.get(f"/admin/usage?month={month}&by=user", headers=ADMIN).json()
    assert monthly["data"][0]["usd"] == 0.048 and monthly["period"] == "month"
