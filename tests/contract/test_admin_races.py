"""Admin writes that lose the compare-and-set, on every backend: a race lost to writes of
other records is decided again and lands; one lost again and again to changes of the very
record written ends in `admin_busy`, leaving the winner's value."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.admin.operations import Actor, AdminOps
from gateway.admin.records import Change, Snapshot, Target
from gateway.admin.state import RuntimeState
from gateway.admin.store import AdminStore
from gateway.errors import AdminBusy
from gateway.settings.config import parse_config
from gateway.store.base import Store

pytestmark = pytest.mark.anyio
ACTOR = Actor("root", "req_1", "127.0.0.1")
RULES = {"rules": [{"unit": "images", "window": "day", "limit": 5}]}


class Rival:
    """An admin store whose next `races` writes each lose to another admin's write of
    `field` (in `target`), landed just before them."""

    def __init__(self, inner: AdminStore, target: Target, field: str, races: int) -> None:
        self.inner, self.target, self.field, self.races = inner, target, field, races
        self.won = 0

    async def apply(self, change: Change, read: int, now: float) -> str | None:
        if self.won < self.races:
            self.won += 1
            value = f'[{{"unit":"images","window":"day","limit":{100 + self.won}}}]'
            rival = Change(self.target, self.field, value, {"action": "rival"})
            assert await self.inner.apply(rival, await self.inner.generation(), now)
        return await self.inner.apply(change, read, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _ops(store: AdminStore) -> AdminOps:
    return AdminOps(RuntimeState(store, parse_config({}).quotas))


async def test_races_lost_to_other_records_are_retried_until_the_write_lands(
    store: Store, books: AdminStore
) -> None:
    """Ten writes of bob's rules land, one before each try of alice's: hers lands too."""
    rival = Rival(books, "quotas", "user:bob", races=10)
    done = await _ops(rival).set_rules("user", "alice", RULES, ACTOR)
    assert done.rules[0].limit == 5 and rival.won == 10
    snapshot: Snapshot = await books.snapshot()
    assert snapshot.overrides[("user", "alice")][0].limit == 5
    assert snapshot.overrides[("user", "bob")][0].limit == 110


async def test_races_lost_to_the_same_record_end_in_admin_busy(
    store: Store, books: AdminStore
) -> None:
    """alice's rules changed by another admin before each try: after three such races the
    write gives up with admin_busy, and the other admin's last value stands."""
    rival = Rival(books, "quotas", "user:alice", races=100)
    with pytest.raises(AdminBusy):
        await _ops(rival).set_rules("user", "alice", RULES, ACTOR)
    assert rival.won <= 4
    snapshot: Snapshot = await books.snapshot()
    assert snapshot.overrides[("user", "alice")][0].limit == 100 + rival.won
