"""The admin store's targets on every backend: each is one hash the same generic write and
snapshot follow, and an entry this version cannot read is left out, not fatal."""

from __future__ import annotations

import logging
from typing import get_args

import orjson
import pytest
from support.config import EDITS_PRICE

from gateway.admin.records import (
    TARGETS,
    AlertRule,
    Change,
    KeyRecord,
    Target,
    Webhook,
    encode_rules,
    list_field,
    price_field,
)
from gateway.admin.store import AdminStore
from gateway.settings.config import QuotaRule
from gateway.store.base import Store

pytestmark = pytest.mark.anyio
KEY = KeyRecord("key_1", "alice", "vision", "user", "0" * 64, 1.0, "root")
HOOK = Webhook("wh_1", "leads", "https://hooks.example/a", "json", "whsec_x", 1.0, "root")
RULE = QuotaRule(unit="images", limit=5, window="day")
ONE_OF_EACH: dict[Target, tuple[str, str]] = {
    "keys": ("key_1", KEY.encode()),
    "quotas": ("team:vision", encode_rules((RULE,))),
    "webhooks": ("wh_1", HOOK.encode()),
    "alerts": ("team:vision", AlertRule((50, 80), ("wh_1",)).encode()),
    "models": (list_field("edits"), '["gpt-image-2"]'),
}


async def _set(admin: AdminStore, store: Store, target: Target, field: str, value: str) -> None:
    read = await admin.generation()
    audit = {"action": "test.set", "target": field}
    assert await admin.apply(Change(target, field, value, audit), read, store.clock()) is not None


def test_every_target_is_a_store_target() -> None:
    """The snapshot reads exactly the targets a change may name, models among them."""
    assert get_args(Target) == TARGETS
    assert "models" in TARGETS


async def test_each_target_is_written_and_read_the_same_way(
    store: Store, books: AdminStore
) -> None:
    """One change per target through the one compare-and-set write: the snapshot shows
    each, and the generation counted every write."""
    for target, (field, value) in ONE_OF_EACH.items():
        await _set(books, store, target, field, value)
    snapshot = await books.snapshot()
    assert snapshot.generation == len(TARGETS)
    assert snapshot.keys == {"key_1": KEY}
    assert snapshot.overrides == {("team", "vision"): (RULE,)}
    assert snapshot.webhooks == {"wh_1": HOOK}
    assert snapshot.alerts == {("team", "vision"): AlertRule((50, 80), ("wh_1",))}
    assert snapshot.models.lists == {"edits": ("gpt-image-2",)}


async def test_an_unreadable_model_setting_is_left_out_and_said(
    store: Store, books: AdminStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A model price another version wrote in a shape this one cannot read is left out of
    the snapshot with a log line; the other model settings and targets are kept."""
    await _set(
        books, store, "models", price_field("gpt-image-2"), orjson.dumps(EDITS_PRICE).decode()
    )
    await _set(books, store, "models", price_field("gpt-image-x"), '{"image": {"low": 1}}')
    await _set(books, store, "quotas", "team:vision", encode_rules((RULE,)))
    with caplog.at_level(logging.WARNING, logger="gateway.admin"):
        snapshot = await books.snapshot()
    assert set(snapshot.models.prices) == {"gpt-image-2"}
    assert snapshot.overrides == {("team", "vision"): (RULE,)}
    assert "price:gpt-image-x left out" in caplog.text
