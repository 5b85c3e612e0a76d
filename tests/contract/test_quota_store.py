"""The quota contract every store backend keeps: atomic, exact, and on one clock."""

from __future__ import annotations

import asyncio

import pytest
from support.clock import FakeClock

from gateway.auth.base import Identity
from gateway.errors import QuotaExceeded, RateLimited, StoreUnavailable
from gateway.quota.counters import request_cost
from gateway.quota.ledger import QuotaLedger
from gateway.settings.config import DALL_E_2_PRICES, parse_config
from gateway.store.base import (
    ChargeItem,
    ChargeOutcome,
    Receipt,
    Store,
    StoreError,
    UsageCharge,
)
from gateway.vocabulary import Size, Unit

pytestmark = pytest.mark.anyio
ALICE, BOB = Identity("alice", "vision"), Identity("bob", "vision")
RECEIPT = "gw:v1:receipt:{t}:r1"


def cost(n: int, size: Size) -> dict[Unit, int]:
    """What a request of `n` images at `size` reserves at dall-e-2's list price, as the
    variations adapter prices it."""
    return request_cost(n, DALL_E_2_PRICES[size])


def item(key: str, amount: int, limit: int, start: float = 0, end: float = 4e9) -> ChargeItem:
    return ChargeItem("gw:v1:test:{t}:" + key, amount, limit, start, end)


def ledger(store: Store, **quotas: object) -> QuotaLedger:
    config = parse_config({"quotas": {"default": [], **quotas}})
    return QuotaLedger(config.quotas, store)


async def test_charge_admits_within_the_limit_and_reports_usage(store: Store) -> None:
    """Charges add up until the limit, and the outcome carries usage after the charge."""
    first = await store.charge([item("a", 3, 5)])
    second = await store.charge([item("a", 2, 5)])
    assert first is not None and first.admitted and first.used == [3]
    assert second is not None and second.admitted and second.used == [5]


async def test_a_refusal_charges_no_counter(store: Store) -> None:
    """If one counter lacks room, none is charged: check and charge are one step."""
    await store.charge([item("full", 5, 5)])
    outcome = await store.charge([item("free", 1, 100), item("full", 1, 5)])
    assert outcome is not None and not outcome.admitted and outcome.refused == [1]
    assert await store.read([item("free", 0, 0).key, item("full", 0, 0).key]) == [0, 5]


async def test_a_read_spans_teams_in_any_order(store: Store) -> None:
    """Counters of several teams (several Cluster slots) are read in one call, each value
    where its key was asked, never as one cross-slot command."""
    keys = [f"gw:v1:test:{{{team}}}:x" for team in ("vision", "audio", "ops", "ml", "web")]
    for amount, key in enumerate(keys, start=1):
        await store.charge([ChargeItem(key, amount, 100, 0, 4e9)])
    order = [keys[3], keys[0], "gw:v1:test:{none}:x", keys[4], keys[1], keys[2]]
    assert await store.read(order) == [4, 1, 0, 5, 2, 3]


async def test_zero_amounts_never_refuse(store: Store) -> None:
    """A counter charged nothing (a unit a cache hit does not consume) cannot refuse."""
    await store.charge([item("full", 5, 5)])
    outcome = await store.charge([item("full", 0, 5), item("other", 1, 5)])
    assert outcome is not None and outcome.admitted and outcome.used == [5, 1]


async def test_a_stale_window_is_not_decided(store: Store, clock: FakeClock) -> None:
    """Items whose window does not hold the store's clock are neither charged nor refused."""
    outcome = await store.charge([item("a", 1, 5, start=clock.now + 60, end=clock.now + 120)])
    assert outcome is None
    assert await store.read([item("a", 0, 0).key]) == [0]


async def test_refund_gives_back_but_never_below_zero(store: Store) -> None:
    """Refunds subtract, floor at zero, and skip counters that do not exist."""
    await store.charge([item("a", 4, 10)])
    await store.refund([(item("a", 0, 0).key, 3), (item("missing", 0, 0).key, 2)])
    assert await store.read([item("a", 0, 0).key, item("missing", 0, 0).key]) == [1, 0]
    await store.refund([(item("a", 0, 0).key, 5)])
    assert await store.read([item("a", 0, 0).key]) == [0]


async def test_a_negative_refund_tops_up_past_the_limit(store: Store) -> None:
    """A top-up (the real cost above the reservation) is added even over the limit, once."""
    await store.charge([item("a", 8, 10)], Receipt(RECEIPT, 60_000))
    for _ in range(2):
        await store.refund([(item("a", 0, 0).key, -5), (item("missing", 0, 0).key, -2)], RECEIPT)
    assert await store.read([item("a", 0, 0).key, item("missing", 0, 0).key]) == [13, 0]


async def test_a_refund_naming_its_receipt_applies_once(store: Store) -> None:
    """A refund that names the charge's receipt applies once, however often it is retried."""
    await store.charge([item("a", 4, 10)], Receipt(RECEIPT, 60_000))
    for _ in range(3):
        await store.refund([(item("a", 0, 0).key, 3)], RECEIPT)
    assert await store.read([item("a", 0, 0).key]) == [1]


async def test_a_refused_charge_leaves_no_receipt_to_refund(store: Store) -> None:
    """A refund naming a receipt the store never issued (the charge was refused) gives
    nothing back."""
    await store.charge([item("full", 5, 5)])
    outcome = await store.charge([item("full", 1, 5)], Receipt(RECEIPT, 60_000))
    assert outcome is not None and not outcome.admitted
    await store.refund([(item("full", 0, 0).key, 5)], RECEIPT)
    assert await store.read([item("full", 0, 0).key]) == [5]


class LostReplies:
    """A store whose next `charge` or `refund` reaches it but whose reply is lost (as when
    Redis dies mid-answer), or, with `unreached`, fails without reaching it."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.lose, self.unreached = inner, set[str](), set[str]()

    def clock(self, tag: str = "") -> float:
        return self.inner.clock(tag)

    def _fail(self, call: str) -> None:
        if call in self.lose or call in self.unreached:
            self.lose.discard(call)
            self.unreached.discard(call)
            raise StoreError(f"{call}: reply lost")

    async def charge(
        self,
        items: list[ChargeItem],
        receipt: Receipt | None = None,
        usage: UsageCharge | None = None,
    ) -> ChargeOutcome | None:
        if "charge" in self.unreached:
            self._fail("charge")
        outcome = await self.inner.charge(items, receipt, usage)
        self._fail("charge")
        return outcome

    async def refund(
        self,
        items: list[tuple[str, int]],
        receipt: str | None = None,
        usage: UsageCharge | None = None,
    ) -> None:
        if "refund" in self.unreached:
            self._fail("refund")
        await self.inner.refund(items, receipt, usage)
        self._fail("refund")

    async def read(self, keys: list[str]) -> list[int]:
        return await self.inner.read(keys)


async def _used_becomes(quotas: QuotaLedger, identity: Identity, expected: list[float]) -> None:
    """Wait (briefly) for the ledger's background refunds to bring usage to `expected`."""
    for _ in range(200):
        if [s.used for s in await quotas.states(identity)] == expected:
            return
        await asyncio.sleep(0.01)
    assert [s.used for s in await quotas.states(identity)] == expected


RULES = {"default": [{"unit": "images", "limit": 100, "window": "day"}]}


async def test_a_charge_whose_reply_was_lost_is_taken_back(store: Store) -> None:
    """Redis charged but died before answering: the caller got a 503, and the charge is
    taken back as soon as the store answers again."""
    flaky = LostReplies(store)
    quotas = QuotaLedger(parse_config({"quotas": RULES}).quotas, flaky)  # type: ignore[arg-type]
    flaky.lose.add("charge")
    with pytest.raises(StoreUnavailable):
        await quotas.reserve(ALICE, cost(3, "256x256"))
    assert [s.used for s in await quotas.states(ALICE)] == [3]  # landed, reply lost
    await quotas.reserve(BOB, cost(1, "256x256"))  # the store answers again
    await _used_becomes(quotas, ALICE, [0])
    assert [s.used for s in await quotas.states(BOB)] == [1]


async def test_a_charge_that_never_arrived_is_not_taken_back(store: Store) -> None:
    """A charge that failed before reaching the store leaves nothing to take back."""
    flaky = LostReplies(store)
    quotas = QuotaLedger(parse_config({"quotas": RULES}).quotas, flaky)  # type: ignore[arg-type]
    await quotas.reserve(ALICE, cost(2, "256x256"))
    flaky.unreached.add("charge")
    with pytest.raises(StoreUnavailable):
        await quotas.reserve(ALICE, cost(3, "256x256"))
    await quotas.reserve(BOB, cost(1, "256x256"))
    await asyncio.sleep(0.05)
    assert [s.used for s in await quotas.states(ALICE)] == [2]


async def test_a_reservation_cancelled_mid_charge_is_taken_back(store: Store) -> None:
    """A request cancelled while its charge is on the wire (a server shutting down) leaves
    no charge behind once the store answers again."""

    class Slow(LostReplies):
        async def charge(
            self,
            items: list[ChargeItem],
            receipt: Receipt | None = None,
            usage: UsageCharge | None = None,
        ) -> ChargeOutcome | None:
            outcome = await self.inner.charge(items, receipt, usage)
            if items[0].amount == 3:
                await asyncio.sleep(10)  # the reply is on its way when the request is cancelled
            return outcome

    slow = Slow(store)
    quotas = QuotaLedger(parse_config({"quotas": RULES}).quotas, slow)  # type: ignore[arg-type]
    reserving = asyncio.ensure_future(quotas.reserve(ALICE, cost(3, "256x256")))
    await asyncio.sleep(0.05)
    reserving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reserving
    await quotas.close()
    assert [s.used for s in await quotas.states(ALICE)] == [0]


@pytest.mark.parametrize("failure", ["lose", "unreached"])
async def test_a_failed_refund_is_made_exactly_once(store: Store, failure: str) -> None:
    """A refund that failed is made when the store answers again; one whose reply was lost
    (it landed) is not made twice."""
    flaky = LostReplies(store)
    quotas = QuotaLedger(parse_config({"quotas": RULES}).quotas, flaky)  # type: ignore[arg-type]
    reservation = await quotas.reserve(ALICE, cost(4, "256x256"))
    getattr(flaky, failure).add("refund")
    await quotas.settle(reservation, delivered=1, asked=4)
    await quotas.reserve(BOB, cost(1, "256x256"))  # the store answers again
    await _used_becomes(quotas, ALICE, [1])
    await asyncio.sleep(0.05)
    assert [s.used for s in await quotas.states(ALICE)] == [1]


async def test_concurrent_reservations_admit_exactly_the_limit(store: Store) -> None:
    """With 10 left, 30 concurrent requests admit exactly 10."""
    quotas = ledger(store, users={"alice": [{"unit": "requests", "limit": 10, "window": "day"}]})
    results = await asyncio.gather(
        *(quotas.reserve(ALICE, cost(1, "256x256")) for _ in range(30)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 10
    assert all(isinstance(r, QuotaExceeded) for r in results if isinstance(r, BaseException))


async def test_team_pool_is_shared_by_its_members(store: Store) -> None:
    """Two users of one team draw from one pool: 6 images in all, whoever asks."""
    quotas = ledger(store, teams={"vision": [{"unit": "images", "limit": 6, "window": "month"}]})
    await quotas.reserve(ALICE, cost(4, "256x256"))
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(BOB, cost(3, "256x256"))
    await quotas.reserve(BOB, cost(2, "256x256"))
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(ALICE, cost(1, "256x256"))


async def test_minute_window_rolls_over_on_the_clock(store: Store, clock: FakeClock) -> None:
    """A minute limit refuses until the next UTC minute, then admits again."""
    quotas = ledger(store, default=[{"unit": "requests", "limit": 2, "window": "minute"}])
    await quotas.reserve(ALICE, cost(1, "256x256"))
    await quotas.reserve(ALICE, cost(1, "256x256"))
    with pytest.raises(RateLimited) as refused:
        await quotas.reserve(ALICE, cost(1, "256x256"))
    assert refused.value.code == "rate_limit_exceeded"
    assert refused.value.headers["retry-after"] == "30"  # clock is 30 s into the minute
    clock.advance(30)
    assert (await quotas.reserve(ALICE, cost(1, "256x256"))).used == [1]


async def test_usd_is_charged_by_size_and_refunded_for_missing_images(store: Store) -> None:
    """usd costs n x price(size); images not delivered are given back, requests are not."""
    quotas = ledger(
        store,
        default=[
            {"unit": "requests", "limit": 100, "window": "day"},
            {"unit": "usd", "limit": 1.0, "window": "month"},
        ],
    )
    reservation = await quotas.reserve(ALICE, cost(5, "512x512"))
    assert [s.used for s in reservation.states()] == [1, pytest.approx(0.09)]
    await quotas.settle(reservation, delivered=2, asked=5)
    assert [s.used for s in await quotas.states(ALICE)] == [1, pytest.approx(0.036)]


async def test_nothing_produced_upstream_keeps_the_request_and_refunds_the_rest(
    store: Store,
) -> None:
    """A call the upstream answered with nothing keeps its request unit (the call was made)
    and gives back its images, once however often it is settled."""
    quotas = ledger(
        store,
        default=[
            {"unit": "requests", "limit": 1, "window": "day"},
            {"unit": "images", "limit": 10, "window": "day"},
        ],
    )
    reservation = await quotas.reserve(ALICE, cost(3, "256x256"))
    await quotas.settle(reservation, delivered=0, asked=3)
    await quotas.settle(reservation, delivered=0, asked=3)  # settling twice refunds once
    assert [s.used for s in await quotas.states(ALICE)] == [1, 0]
    with pytest.raises(RateLimited):
        await quotas.reserve(ALICE, cost(1, "256x256"))


async def test_a_request_that_never_reached_the_upstream_is_refunded_in_full(
    store: Store,
) -> None:
    """`refund` gives back every unit, requests included, once."""
    quotas = ledger(store, default=[{"unit": "requests", "limit": 1, "window": "day"}])
    reservation = await quotas.reserve(ALICE, cost(1, "256x256"))
    await quotas.refund(reservation)
    await quotas.refund(reservation)
    assert [s.used for s in await quotas.states(ALICE)] == [0]
    await quotas.reserve(ALICE, cost(1, "256x256"))


async def test_hits_charge_only_the_listed_units(store: Store) -> None:
    """A reservation limited to some units leaves the others untouched."""
    quotas = ledger(
        store,
        default=[
            {"unit": "requests", "limit": 5, "window": "day"},
            {"unit": "images", "limit": 5, "window": "day"},
        ],
    )
    await quotas.reserve(ALICE, cost(4, "256x256"), units=["requests"])
    assert [s.used for s in await quotas.states(ALICE)] == [1, 0]


async def test_refusal_is_insufficient_quota_for_long_windows_and_images(store: Store) -> None:
    """Day/month rules and any images or usd rule refuse with insufficient_quota, no retry."""
    quotas = ledger(store, default=[{"unit": "images", "limit": 1, "window": "hour"}])
    with pytest.raises(QuotaExceeded) as refused:
        await quotas.reserve(ALICE, cost(2, "256x256"))
    assert refused.value.code == "insufficient_quota"
    assert refused.value.headers["x-should-retry"] == "false"
    assert refused.value.headers["x-ratelimit-remaining-images"] == "1"


async def test_user_override_replaces_the_default_of_the_same_unit_and_window(store: Store) -> None:
    """alice's override replaces the default images/day rule; bob keeps the default."""
    quotas = ledger(
        store,
        default=[{"unit": "images", "limit": 1, "window": "day"}],
        users={"alice": [{"unit": "images", "limit": 3, "window": "day"}]},
    )
    await quotas.reserve(ALICE, cost(3, "256x256"))
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(BOB, cost(2, "256x256"))


async def test_fail_closed_and_fail_open_on_a_broken_store() -> None:
    """A failing store refuses with 503 under fail_closed and admits under fail_open."""
    from gateway.store.memory import MemoryStore

    class Broken(MemoryStore):
        async def charge(self, items, receipt=None, usage=None):  # type: ignore[no-untyped-def]
            raise StoreError("down")

    rules = {"default": [{"unit": "requests", "limit": 1, "window": "day"}]}
    closed = QuotaLedger(parse_config({"quotas": rules}).quotas, Broken())
    with pytest.raises(StoreUnavailable):
        await closed.reserve(ALICE, cost(1, "256x256"))
    errors = []
    opened = QuotaLedger(
        parse_config({"quotas": rules}).quotas,
        Broken(),
        fail_open=True,
        on_store_error=lambda: errors.append(1),
    )
    assert not (await opened.reserve(ALICE, cost(1, "256x256"))).metered
    assert errors == [1]


@pytest.mark.redis
async def test_a_burst_waits_for_pool_connections_instead_of_failing(clean_redis: str) -> None:
    """1000 concurrent charges on one process all get an answer: the pool queues, never errors."""
    from gateway.store.connect import connect
    from gateway.store.redis import RedisStore

    store = RedisStore(connect(clean_redis))
    try:
        charges = (store.charge([item("burst", 1, 10_000)]) for _ in range(1000))
        outcomes = await asyncio.gather(*charges)
    finally:
        await store.close()
    assert all(outcome is not None and outcome.admitted for outcome in outcomes)
    assert max(outcome.used[0] for outcome in outcomes if outcome) == 1000


@pytest.mark.redis
async def test_redis_counters_expire_with_their_window(clean_redis: str, clock: FakeClock) -> None:
    """A counter's Redis TTL ends a minute after its window does, so usage never piles up."""
    import redis.asyncio as aioredis

    from gateway.store.connect import connect
    from gateway.store.redis import RedisStore

    store = RedisStore(connect(clean_redis), clock=clock)
    quotas = ledger(store, default=[{"unit": "requests", "limit": 5, "window": "hour"}])
    try:
        reservation = await quotas.reserve(ALICE, cost(1, "256x256"))
    finally:
        await store.close()
    key = reservation.counters[0].key
    assert key.startswith("gw:v1:quota:{q}:user:alice:requests:hour:")
    async with aioredis.Redis.from_url(clean_redis) as client:
        expire_at = await client.expiretime(key)
    assert expire_at == int(reservation.counters[0].end) + 60
