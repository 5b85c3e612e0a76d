"""The quota ledger: reserve before forwarding, settle after, report state.

`reserve` is one atomic check-and-charge in the store over every applicable counter; a
refused request consumes nothing. `settle` follows what the upstream did (the request unit
stays, images and usd not produced are given back); `refund` gives back a request that
never reached it. When the
store fails, `on_error` decides: fail_closed refuses with 503, fail_open admits unmetered.

Nothing is lost when the store fails mid-step. Every charge leaves a receipt in the store,
and refunds name it, so each applies at most once. A charge whose reply never came (Redis
died before answering) may have landed: it is taken back, and a refund that failed is
tried again, as soon as the store answers again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.auth.base import Identity
from gateway.errors import RateLimited, StoreUnavailable
from gateway.metrics import QUOTA_REJECTIONS, STORE_ERRORS
from gateway.quota.alerts import Crossing, crossings, marker_key, thresholds_of
from gateway.quota.books import FIELD_UNIT, base_field, usage_charge
from gateway.quota.calendar import Calendar
from gateway.quota.counters import (
    QUOTA_TAG,
    Counter,
    RuleState,
    counters,
    rule_state,
    usd_amount,
)
from gateway.quota.headers import refusal
from gateway.quota.policy import QuotaPolicy, ScopedRule, own_rules, pool_rules
from gateway.settings.config import QuotasConfig
from gateway.store.base import (
    ChargeItem,
    ChargeOutcome,
    QuotaStore,
    Receipt,
    StoreError,
    UsageCharge,
    make_key,
)
from gateway.vocabulary import Unit

log = logging.getLogger("gateway.quota")
_CLOCK_ATTEMPTS = 3
# How long a charge's receipt is kept: past the longest request, and through an outage.
RECEIPT_SECONDS = 15 * 60
# Refunds held for retry while the store is down (the first ones after a failure matter:
# later charges failed before reaching the store).
UNSETTLED_LIMIT = 1024
Refunds = list[tuple[str, int]]
Share = Callable[[str, int], int]  # (unit, amount charged) -> amount to give back
_UNWIND_TURNS = 10  # event-loop turns a cancelled request needs to start its refund


@dataclass
class Reservation:
    """What one request was charged, counter by counter, and the usage that resulted."""

    counters: list[Counter] = field(default_factory=list)
    amounts: list[int] = field(default_factory=list)
    used: list[int] = field(default_factory=list)
    metered: bool = True  # False when fail_open admitted it without the store
    settled: bool = False
    receipt: str | None = None  # the store's proof of the charge, named by its refund
    usage: UsageCharge | None = None  # the chargeback books it moved (books.py)

    def states(self) -> list[RuleState]:
        """The charged rules' state right after the charge (or the settlement)."""
        return [rule_state(c, used) for c, used in zip(self.counters, self.used, strict=True)]


class QuotaLedger:
    """Applies the configured quota rules through a `QuotaStore`."""

    def __init__(
        self,
        quotas: QuotasConfig,
        store: QuotaStore,
        *,
        fail_open: bool = False,
        upstream_timeout_seconds: float = 0.0,
        on_store_error: Callable[[], None] = STORE_ERRORS.inc,
        policy: Callable[[], QuotaPolicy] | None = None,
        on_crossing: Callable[[Crossing], None] | None = None,
    ) -> None:
        # The rules in force: the config's, or with runtime overrides (admin/state.py).
        static = QuotaPolicy(quotas)
        self._policy = policy or (lambda: static)
        self.calendar = Calendar(quotas.timezone)  # the zone is the config's, never runtime
        self._on_crossing = on_crossing or (lambda crossing: None)  # must not block
        self._fail_open = fail_open
        self._store, self._on_store_error = store, on_store_error
        # A receipt outlives any upstream call that could still settle against it.
        self._receipt_ms = int(max(RECEIPT_SECONDS, 3 * upstream_timeout_seconds) * 1000)
        self._unsettled: deque[tuple[str, Refunds, UsageCharge | None]] = deque()
        self._retrying: asyncio.Task[None] | None = None
        self._refunding = 0  # refunds under way (close waits for them)

    async def reserve(
        self,
        identity: Identity,
        cost: Mapping[Unit, int],
        units: Sequence[Unit] | None = None,
        spent_on: tuple[str, str] = ("", ""),
    ) -> Reservation:
        """Charge `cost` (only its `units`, if given) to every rule, booked also under
        `spent_on` (the endpoint and the model).

        Raises `RateLimited`/`QuotaExceeded` (nothing charged), or `StoreUnavailable` when the
        store fails under fail_closed.
        """
        policy = self._policy()
        rules = policy.rules_for(identity.user, identity.team)
        receipt = make_key("receipt", QUOTA_TAG, secrets.token_hex(12))
        # The books get what the counters get, whichever rules exist; a hit, one hit.
        booked: dict[str, int] = {u: a for u, a in cost.items() if units is None or u in units}
        booked["cache_hits"] = int(units is not None)
        for _ in range(_CLOCK_ATTEMPTS):
            now = self._store.clock(QUOTA_TAG)  # the books' month is the counters' clock's
            live = counters(rules, identity.team, now, self.calendar)
            amounts = [cost.get(c.unit, 0) if units is None or c.unit in units else 0 for c in live]
            alerts = [thresholds_of(c, policy.thresholds) for c in live]
            items = _items(live, amounts, alerts)
            usage = usage_charge(identity.user, identity.team, now, booked, self.calendar, spent_on)
            try:
                outcome = await self._store.charge(items, Receipt(receipt, self._receipt_ms), usage)
            except (StoreError, asyncio.CancelledError) as exc:
                # The charge may have landed with its reply lost: take it back when we can.
                self._keep_unsettled(receipt, [(i.key, i.amount) for i in items if i.amount], usage)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return self._unmetered(exc, quota=bool(rules))
            self._retry_unsettled()
            if outcome is None:
                continue  # our clock was off a window edge; the store corrected it
            self._report(outcome, live, alerts, identity)
            if not outcome.admitted:
                refused = [live[i] for i in outcome.refused]
                raise _refused(live, outcome.used, refused, outcome.now)
            return Reservation(live, amounts, outcome.used, receipt=receipt, usage=usage)
        return self._unmetered(StoreError("the store's clock kept moving across windows"))

    def _report(
        self,
        outcome: ChargeOutcome,
        live: Sequence[Counter],
        alerts: Sequence[tuple[int, ...]],
        identity: Identity,
    ) -> None:
        """Hand the thresholds this charge crossed to the notifier (it only queues them)."""
        if outcome.crossed:
            caller = (identity.user, identity.team, outcome.now)
            for crossing in crossings(
                outcome.crossed, live, alerts, outcome.used, outcome.refused, caller
            ):
                self._on_crossing(crossing)

    async def check_room(self, identity: Identity, units: Sequence[Unit]) -> None:
        """Refuse, as `reserve` would, a caller with a rule of one of `units` spent in its
        current window: one read, nothing charged. A store error lets it through (`reserve`
        decides then, under `on_error`)."""
        rules = self._policy().rules_for(identity.user, identity.team)
        rules = tuple(r for r in rules if r.rule.unit in units)
        if not rules:
            return
        live = counters(rules, identity.team, self._store.clock(QUOTA_TAG), self.calendar)
        try:
            used = await self._store.read([c.key for c in live])
        except StoreError:
            return
        refused = [c for c, u in zip(live, used, strict=True) if u >= c.limit]
        if refused:
            raise _refused(live, used, refused, self._store.clock(QUOTA_TAG))

    def _unmetered(self, exc: StoreError, quota: bool = True) -> Reservation:
        self._on_store_error()
        cause = exc.__cause__ or exc
        if not quota:  # only the usage books were at stake: they do not refuse anyone
            log.warning("quota store unavailable, serving without usage books: %r", cause)
            return Reservation(metered=False)
        if not self._fail_open:
            log.warning("quota store unavailable, refusing (fail_closed): %r", cause)
            raise StoreUnavailable() from exc
        log.warning("quota store unavailable, admitting unmetered (fail_open): %r", cause)
        return Reservation(metered=False)

    async def settle(
        self, reservation: Reservation, delivered: int, asked: int, usd: float | None = None
    ) -> None:
        """Settle a request that was sent upstream to what the upstream produced and cost.

        The request unit stays charged whatever the answer (the call was made). The images
        not produced (all of them when the upstream produced nothing) and their share of
        the price are refunded; when the upstream reported the real cost (`usd`) the `usd`
        counters are set to it instead: a refund, or a top-up when it cost more than
        reserved (the next request sees the overrun).

        Never raises: an adjustment that cannot reach the store is kept, and made once the
        store answers again (usage is over-counted, the safe side, meanwhile).
        """
        missing = max(0, asked - delivered)

        def share(unit: str, amount: int) -> int:
            if unit == "requests":
                return 0
            if unit == "usd" and usd is not None:
                return amount - usd_amount(usd)
            return amount * missing // asked

        await self._give_back(reservation, share)

    async def refund(self, reservation: Reservation) -> None:
        """Give back everything: the request never reached the upstream. Never raises."""
        await self._give_back(reservation, lambda unit, amount: amount)

    async def settle_as_hit(self, reservation: Reservation, hit_units: Sequence[Unit]) -> None:
        """Refund every unit a cache hit does not consume (for a coalesced request)."""
        await self._give_back(
            reservation, lambda unit, amount: 0 if unit in hit_units else amount, hits=1
        )

    async def _give_back(self, reservation: Reservation, share: Share, hits: int = 0) -> None:
        """Refund `share(unit, charged)` of each counter and of the books (negative: a
        top-up), and book `hits` cache hits, once; the reservation's usage then shows the
        settled state (for the answer's headers)."""
        if reservation.settled or not reservation.metered:
            return
        reservation.settled = True
        pairs = zip(reservation.counters, reservation.amounts, strict=True)
        shares = [share(counter.unit, amount) for counter, amount in pairs]
        refunds = [(c.key, n) for c, n in zip(reservation.counters, shares, strict=True) if n]
        usage = _usage_refund(reservation.usage, share, hits)
        self._refunding += 1
        try:
            await self._store.refund(refunds, reservation.receipt, usage)
        except StoreError as exc:
            self._on_store_error()
            log.warning("quota refund failed, kept for later: %r", exc.__cause__ or exc)
            if reservation.receipt is not None:
                self._keep_unsettled(reservation.receipt, refunds, usage)
            return
        finally:
            self._refunding -= 1
        reservation.used = [
            max(0, used - n) for used, n in zip(reservation.used, shares, strict=True)
        ]

    def _keep_unsettled(self, receipt: str, refunds: Refunds, usage: UsageCharge | None) -> None:
        """Hold a refund (by receipt, so it applies once) until the store answers again."""
        if not refunds and usage is None:
            return
        if len(self._unsettled) >= UNSETTLED_LIMIT:
            log.warning("quota refund dropped: %d already wait for the store", UNSETTLED_LIMIT)
            return
        self._unsettled.append((receipt, refunds, usage))

    def _retry_unsettled(self) -> None:
        """The store answered: make the held refunds, in the background, one task at a time."""
        if self._unsettled and (self._retrying is None or self._retrying.done()):
            self._retrying = asyncio.create_task(self._settle_unsettled())

    async def _settle_unsettled(self) -> None:
        while self._unsettled:
            receipt, refunds, usage = self._unsettled[0]
            try:
                await self._store.refund(refunds, receipt, usage)
            except StoreError:
                return  # down again: the next answer from the store resumes
            self._unsettled.popleft()

    async def close(self, timeout_seconds: float = 5.0) -> None:
        """Before the store closes: let refunds under way finish and make the held ones.

        At shutdown the server cancels requests that outlive its grace period; each gives
        back its charge as it unwinds, which takes a few turns of the event loop.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        for _ in range(_UNWIND_TURNS):
            await asyncio.sleep(0)
        while (self._refunding or self._unsettled) and loop.time() < deadline:
            await self._settle_unsettled()
            await asyncio.sleep(0.02)
        if self._refunding or self._unsettled:
            left = self._refunding + len(self._unsettled)
            log.warning("%d quota refunds not made before shutdown", left)

    async def states(self, identity: Identity) -> list[RuleState]:
        """Every rule applicable to `identity`, now; raises `StoreUnavailable`."""
        rules = self._policy().rules_for(identity.user, identity.team)
        return await self._read(rules, identity.team)

    async def team_states(self, team: str) -> list[RuleState]:
        """The team pool's rules, now; raises `StoreUnavailable`."""
        return await self._read(pool_rules(self._policy().quotas, team), team)

    async def all_states(self, identities: Sequence[Identity]) -> list[RuleState]:
        """Every rule of every identity, of every user named by a rule of their own (config
        or runtime: users known only to the IdP, say), and of every team pool (for scrapes).

        One store read for all of them (grouped by slot in the store, so a Cluster answers it
        node by node, concurrently). The store being down yields no states rather than an
        error: the scrape still reports the process's own metrics, and the gap shows on
        dashboards.
        """
        quotas = self._policy().quotas
        subjects = [(own_rules(quotas, i.user), i.team) for i in identities]
        named = sorted(set(quotas.users) - {i.user for i in identities})
        subjects += [(own_rules(quotas, user), "") for user in named]  # no team in their keys
        subjects += [(pool_rules(quotas, team), team) for team in sorted(quotas.teams)]
        try:
            return await self._read_many(subjects)
        except StoreUnavailable:
            return []

    async def _read(self, rules: Sequence[ScopedRule], team: str) -> list[RuleState]:
        return await self._read_many([(rules, team)])

    async def _read_many(
        self, subjects: Sequence[tuple[Sequence[ScopedRule], str]]
    ) -> list[RuleState]:
        now = self._store.clock(QUOTA_TAG)
        live = [c for rules, team in subjects for c in counters(rules, team, now, self.calendar)]
        try:
            used = await self._store.read([c.key for c in live])
        except StoreError as exc:
            self._on_store_error()
            raise StoreUnavailable() from exc
        return [rule_state(c, u) for c, u in zip(live, used, strict=True)]

    def clock(self) -> float:
        """The store's clock."""
        return self._store.clock(QUOTA_TAG)


def _items(
    live: Sequence[Counter], amounts: Sequence[int], alerts: Sequence[tuple[int, ...]]
) -> list[ChargeItem]:
    """The store's items of a charge: each counter, its amount and its alert thresholds."""
    return [
        ChargeItem(c.key, a, c.limit, c.start, c.end, t, marker_key(c) if t else "")
        for c, a, t in zip(live, amounts, alerts, strict=True)
    ]


def _usage_refund(usage: UsageCharge | None, share: Share, hits: int) -> UsageCharge | None:
    """What a settlement gives back of the books a reservation moved (`hits` booked as -1s)."""
    if usage is None:
        return None
    back = {
        f: share(FIELD_UNIT[base_field(f)], a)
        for f, a in usage.amounts.items()
        if base_field(f) in FIELD_UNIT
    }
    hits_back = {f: -hits for f in usage.amounts if base_field(f) == "cache_hits"}
    return usage._replace(amounts={**back, "cache_hits": -hits, **hits_back})


def _refused(
    live: Sequence[Counter], used: Sequence[int], refused: Sequence[Counter], now: float
) -> RateLimited:
    """The 429 for the `refused` counters, with the state of every rule checked (`live`, at
    `used`); each refused rule counted in `gateway_quota_rejections_total`."""
    _count_rejections(refused)
    return refusal(refused, [rule_state(c, u) for c, u in zip(live, used, strict=True)], now)


def _count_rejections(refused: Sequence[Counter]) -> None:
    for counter in refused:
        scoped = counter.scoped
        QUOTA_REJECTIONS.labels(scoped.scope, scoped.rule.unit, scoped.rule.window).inc()
