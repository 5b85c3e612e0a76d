"""Budget alerts: thresholds (percents of a budget) and the crossings a charge reports.

A team (or a user, where set) may have thresholds such as 50, 80, 95 and 100 %: they apply
to each of its `usd` and `images` rules of a day, a week or a month (budgets; minute and
hour rules are rate limits, left out). The charge script keeps, per counter and window,
the highest threshold already reported, and reports a rise to the one charge that caused
it (store/lua/charge.lua), so each threshold is announced once per period whatever the
number of replicas. A request refused by a budget counts as reaching 100 % of it.

A `Crossing` says what was crossed, by whose request, the spend so far and where the
period is heading at its run rate; the notifier (notify/) delivers it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.quota.counters import QUOTA_TAG, UNIT_SCALE, Counter
from gateway.quota.forecast import projection
from gateway.quota.policy import Scope
from gateway.store.base import Crossed, make_key
from gateway.vocabulary import Unit, Window

BUDGET_UNITS: frozenset[Unit] = frozenset({"usd", "images"})
BUDGET_WINDOWS: frozenset[Window] = frozenset({"day", "week", "month"})
Thresholds = Mapping[tuple[Scope, str], tuple[int, ...]]  # (scope, subject) -> percents


def marker_key(counter: Counter) -> str:
    """`gw:v1:alert:{q}:<scope>:<subject>:<unit>:<window>:<stamp>`: the highest threshold
    reported for the counter's window (in the quota slot: the charge script moves it)."""
    scoped = counter.scoped
    rule = scoped.rule
    return make_key(
        "alert", QUOTA_TAG, scoped.scope, scoped.subject, rule.unit, rule.window, counter.stamp
    )


def thresholds_of(counter: Counter, thresholds: Thresholds) -> tuple[int, ...]:
    """The alert thresholds that apply to `counter` (none unless it is a budget)."""
    rule = counter.scoped.rule
    if rule.unit not in BUDGET_UNITS or rule.window not in BUDGET_WINDOWS:
        return ()
    return thresholds.get((counter.scoped.scope, counter.scoped.subject), ())


@dataclass(frozen=True)
class Crossing:
    """Thresholds of one budget crossed by one request: what, by whom, and the spend."""

    scope: Scope
    subject: str
    unit: Unit
    window: Window
    period: str  # the window's stamp: 202611, 2026W47, 20261121
    percents: tuple[int, ...]  # the thresholds crossed now, ascending
    limit: float  # in the unit (dollars for usd)
    used: float  # so far in the period
    projected: float  # at the period's end, at its run rate so far
    start: float
    end: float
    at: float  # when (the store's clock)
    refused: bool  # reached by a refusal: the budget could not pay for the request
    user: str  # whose request crossed it
    team: str


def crossings(
    reported: Sequence[Crossed],
    live: Sequence[Counter],
    thresholds: Sequence[tuple[int, ...]],
    used: Sequence[int],
    refused: Sequence[int],
    caller: tuple[str, str, float],
) -> list[Crossing]:
    """The store's reported rises as crossings of the thresholds between their `before`
    and `level` (`caller`: the requesting user, team and the store's time)."""
    user, team, now = caller
    out = []
    for rise in reported:
        counter = live[rise.item]
        percents = tuple(t for t in sorted(thresholds[rise.item]) if rise.before < t <= rise.level)
        if not percents:
            continue
        scale, rule = UNIT_SCALE[counter.unit], counter.scoped.rule
        spent = used[rise.item] / scale
        crossing = Crossing(
            counter.scoped.scope, counter.scoped.subject, rule.unit, rule.window,
            counter.stamp, percents, rule.limit, spent,
            projection(spent, counter.start, counter.end, now), counter.start,
            counter.end, now, rise.item in refused, user, team,
        )  # fmt: skip
        out.append(crossing)
    return out
