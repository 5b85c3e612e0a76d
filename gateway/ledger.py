"""The quota ledger: reserve before forwarding, settle after, report state.

`reserve` is one atomic check-and-charge in the store over every applicable counter; a
refused request consumes nothing. `settle` gives back what was not delivered. When the
store fails, `on_error` decides: fail_closed refuses with 503, fail_open admits unmetered.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.auth import Identity
from gateway.errors import StoreUnavailable
from gateway.metrics import QUOTA_REJECTIONS, STORE_ERRORS
from gateway.policy import ScopedRule, own_rules, pool_rules, rules_for
from gateway.quota import (
    Counter,
    RuleState,
    counters,
    refusal,
    request_cost,
    rule_state,
    window_bounds,
)
from gateway.settings import GatewayConfig, Size, Unit
from gateway.store.base import ChargeItem, QuotaStore, StoreError

log = logging.getLogger("gateway.quota")
_CLOCK_ATTEMPTS = 3


@dataclass
class Reservation:
    """What one request was charged, counter by counter, and the usage that resulted."""

    counters: list[Counter] = field(default_factory=list)
    amounts: list[int] = field(default_factory=list)
    used: list[int] = field(default_factory=list)
    metered: bool = True  # False when fail_open admitted it without the store
    settled: bool = False

    def states(self) -> list[RuleState]:
        """The charged rules' state right after the charge."""
        return [rule_state(c, used) for c, used in zip(self.counters, self.used, strict=True)]


class QuotaLedger:
    """Applies the configured quota rules through a `QuotaStore`."""

    def __init__(
        self,
        config: GatewayConfig,
        store: QuotaStore,
        on_store_error: Callable[[], None] = STORE_ERRORS.inc,
    ) -> None:
        self._quotas, self._prices = config.quotas, config.prices
        # The rules of a (user, team) are fixed for the process: looked up once, not per request.
        self._rules = functools.lru_cache(maxsize=4096)(functools.partial(rules_for, config.quotas))
        self._fail_open = config.store.on_error == "fail_open"
        self._store, self._on_store_error = store, on_store_error

    async def reserve(
        self, identity: Identity, n: int, size: Size, units: Sequence[Unit] | None = None
    ) -> Reservation:
        """Charge a request of `n` images at `size` (only `units`, if given) to every rule.

        Raises `RateLimited`/`QuotaExceeded` (nothing charged), or `StoreUnavailable` when the
        store fails under fail_closed.
        """
        rules = self._rules(identity.user, identity.team)
        if not rules:
            return Reservation()
        cost = request_cost(n, size, self._prices)
        for _ in range(_CLOCK_ATTEMPTS):
            live = counters(rules, identity.team, self._store.clock())
            amounts = [cost[c.unit] if units is None or c.unit in units else 0 for c in live]
            items = [
                ChargeItem(c.key, a, c.limit, c.start, c.end)
                for c, a in zip(live, amounts, strict=True)
            ]
            try:
                outcome = await self._store.charge(items)
            except StoreError as exc:
                return self._unmetered(exc)
            if outcome is None:
                continue  # our clock was off a window edge; the store corrected it
            if not outcome.admitted:
                refused = [live[i] for i in outcome.refused]
                _count_rejections(refused)
                error = refusal(refused, outcome.now)
                error.headers.update(
                    quota_headers(Reservation(live, amounts, outcome.used).states(), outcome.now)
                )
                raise error
            return Reservation(live, amounts, outcome.used)
        return self._unmetered(StoreError("the store's clock kept moving across windows"))

    def _unmetered(self, exc: StoreError) -> Reservation:
        self._on_store_error()
        cause = exc.__cause__ or exc
        if not self._fail_open:
            log.warning("quota store unavailable, refusing (fail_closed): %r", cause)
            raise StoreUnavailable() from exc
        log.warning("quota store unavailable, admitting unmetered (fail_open): %r", cause)
        return Reservation(metered=False)

    async def settle(self, reservation: Reservation, delivered: int, asked: int) -> None:
        """Refund what was not delivered: all of it when nothing was, else the missing images
        (and their price); the request itself stays charged.

        Never raises: a refund that cannot reach the store leaves usage over-counted (the
        safe side) until the window ends, and is logged.
        """
        if delivered >= asked:
            return
        missing = asked - delivered

        def share(counter: Counter, amount: int) -> int:
            if delivered == 0:
                return amount
            return 0 if counter.unit == "requests" else amount * missing // asked

        await self._give_back(reservation, share)

    async def settle_as_hit(self, reservation: Reservation, hit_units: Sequence[Unit]) -> None:
        """Refund every unit a cache hit does not consume (for a coalesced request)."""
        await self._give_back(reservation, lambda c, amount: 0 if c.unit in hit_units else amount)

    async def _give_back(
        self, reservation: Reservation, share: Callable[[Counter, int], int]
    ) -> None:
        """Refund `share(counter, charged)` of each counter, once per reservation."""
        if reservation.settled or not reservation.metered:
            return
        reservation.settled = True
        pairs = zip(reservation.counters, reservation.amounts, strict=True)
        refunds = [(counter.key, share(counter, amount)) for counter, amount in pairs]
        try:
            await self._store.refund([refund for refund in refunds if refund[1] > 0])
        except StoreError as exc:
            self._on_store_error()
            log.warning("quota refund lost: %r", exc.__cause__ or exc)

    async def states(self, identity: Identity) -> list[RuleState]:
        """Every rule applicable to `identity`, now; raises `StoreUnavailable`."""
        return await self._read(self._rules(identity.user, identity.team), identity.team)

    async def team_states(self, team: str) -> list[RuleState]:
        """The team pool's rules, now; raises `StoreUnavailable`."""
        return await self._read(pool_rules(self._quotas, team), team)

    async def all_states(self, identities: Sequence[Identity]) -> list[RuleState]:
        """Every rule of every identity and every configured team pool (for scrapes).

        The store being down yields no states rather than an error: the scrape still
        reports the process's own metrics, and the gap shows on dashboards.
        """
        states: list[RuleState] = []
        try:
            for identity in identities:
                states += await self._read(own_rules(self._quotas, identity.user), identity.team)
            for team in sorted(self._quotas.teams):
                states += await self.team_states(team)
        except StoreUnavailable:
            return []
        return states

    async def _read(self, rules: Sequence[ScopedRule], team: str) -> list[RuleState]:
        live = counters(rules, team, self._store.clock())
        try:
            used = await self._store.read([c.key for c in live])
        except StoreError as exc:
            self._on_store_error()
            raise StoreUnavailable() from exc
        return [rule_state(c, u) for c, u in zip(live, used, strict=True)]

    def clock(self) -> float:
        """The store's clock."""
        return self._store.clock()


def _count_rejections(refused: Sequence[Counter]) -> None:
    for counter in refused:
        scoped = counter.scoped
        QUOTA_REJECTIONS.labels(scoped.scope, scoped.rule.unit, scoped.rule.window).inc()


def _duration(seconds: float) -> str:
    """A reset delay as OpenAI writes it: 1s, 6m0s, 2h3m4s."""
    total = max(1, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _tightest(states: Sequence[RuleState]) -> dict[Unit, RuleState]:
    """Per unit, the rule with the least room left (the later reset on ties)."""
    best: dict[Unit, RuleState] = {}
    for state in states:
        current = best.get(state.unit)
        if current is None or (state.remaining, -state.resets_at) < (
            current.remaining,
            -current.resets_at,
        ):
            best[state.unit] = state
    return best


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6f}".rstrip("0")


def quota_headers(states: Sequence[RuleState], now: float) -> dict[str, str]:
    """x-ratelimit-* (tightest rule per unit) and the IETF RateLimit-Policy / RateLimit fields."""
    headers: dict[str, str] = {}
    for unit, state in _tightest(states).items():
        headers[f"x-ratelimit-limit-{unit}"] = _number(state.limit)
        headers[f"x-ratelimit-remaining-{unit}"] = _number(state.remaining)
        headers[f"x-ratelimit-reset-{unit}"] = _duration(state.resets_at - now)
    # The IETF fields take integer quotas: usd rules appear only in x-ratelimit-*-usd.
    counted = [s for s in states if s.unit != "usd"]
    if counted:
        names = [f'"{s.scope}-{s.unit}-{s.window}"' for s in counted]
        headers["ratelimit-policy"] = ", ".join(
            f"{name};q={int(s.limit)};w={_window_length(s, now)}"
            for name, s in zip(names, counted, strict=True)
        )
        headers["ratelimit"] = ", ".join(
            f"{name};r={int(s.remaining)};t={max(0, round(s.resets_at - now))}"
            for name, s in zip(names, counted, strict=True)
        )
    return headers


def _window_length(state: RuleState, now: float) -> int:
    start, end = window_bounds(state.window, now)
    return round(end - start)
