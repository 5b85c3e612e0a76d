"""Budget alerts on every store backend: each threshold of a budget is reported once per
period, to one charge, however many race across it; a refusal counts as the wall."""

from __future__ import annotations

import asyncio

import pytest
from support.clock import FakeClock

from gateway.auth.base import Identity
from gateway.errors import QuotaExceeded
from gateway.quota.alerts import Crossing
from gateway.quota.counters import request_cost
from gateway.quota.ledger import QuotaLedger
from gateway.quota.policy import QuotaPolicy
from gateway.settings.config import parse_config
from gateway.store.base import Store

pytestmark = pytest.mark.anyio
ALICE, BOB = Identity("alice", "vision"), Identity("bob", "vision")
RULES = {
    "default": [{"unit": "requests", "limit": 1000, "window": "minute"}],
    "teams": {"vision": [{"unit": "images", "limit": 10, "window": "day"}]},
}


def _ledger(store: Store, heard: list[Crossing], percents: tuple[int, ...]) -> QuotaLedger:
    quotas = parse_config({"quotas": RULES}).quotas
    policy = QuotaPolicy(quotas, {("team", "vision"): percents, ("user", "alice"): percents})
    return QuotaLedger(quotas, store, policy=lambda: policy, on_crossing=heard.append)


async def test_racing_charges_report_each_threshold_once(store: Store) -> None:
    """Twelve one-image requests at once against a pool of ten: 50, 80 and 100 % are each
    reported exactly once, to the charge that reached them, with the spend at that point;
    the user's minute rate rule, not a budget, reports nothing."""
    heard: list[Crossing] = []
    ledger = _ledger(store, heard, (50, 80, 100))
    results = await asyncio.gather(
        *(ledger.reserve(ALICE if i % 2 else BOB, request_cost(1, 0.02)) for i in range(12)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, QuotaExceeded) for r in results) == 2
    assert sorted(p for c in heard for p in c.percents) == [50, 80, 100]
    assert {(c.scope, c.subject, c.unit, c.window) for c in heard} == {
        ("team", "vision", "images", "day")
    }
    assert {c.percents: c.used for c in heard} == {(50,): 5, (80,): 8, (100,): 10}
    assert not any(c.refused for c in heard)


async def test_a_refusal_is_the_wall_and_a_jump_names_every_threshold(
    store: Store, clock: FakeClock
) -> None:
    """A request of 9 images crosses 50 and 80 % in one step (one crossing naming both); the
    next, refused for want of room, reports 100 % as the wall; later charges report nothing
    more this day, and the next day starts afresh."""
    heard: list[Crossing] = []
    ledger = _ledger(store, heard, (50, 80, 100))
    await ledger.reserve(ALICE, request_cost(9, 0.02))
    with pytest.raises(QuotaExceeded):
        await ledger.reserve(BOB, request_cost(2, 0.02))
    await ledger.reserve(BOB, request_cost(1, 0.02))
    assert [(c.percents, c.refused, c.user) for c in heard] == [
        ((50, 80), False, "alice"),
        ((100,), True, "bob"),
    ]
    assert heard[0].used == 9 and heard[0].limit == 10
    clock.advance(86_400)
    await ledger.reserve(ALICE, request_cost(6, 0.02))
    assert heard[-1].percents == (50,) and heard[-1].period != heard[0].period
