"""Quota rules turned into counters, costs and their state. No I/O of its own.

A request needs every rule that applies to it (the user's and the team's pools). Each rule
is one counter per calendar window (`calendar.py`: in the company's time zone); its key
carries the window's stamp, so counters expire with their window and never need
resetting. Amounts are integers: `usd` is counted
in micro-dollars so that charges and refunds add up exactly.

The `QuotaLedger` reserves (check-and-charge, atomically in the store), settles (refunds
what was not delivered) and reports state; the store does the I/O; `headers.py` says it
to callers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from gateway.quota.calendar import Calendar
from gateway.quota.policy import ScopedRule
from gateway.store.base import make_key
from gateway.vocabulary import Unit, Window

UNIT_SCALE: Mapping[Unit, int] = {"requests": 1, "images": 1, "usd": 1_000_000}


@dataclass(frozen=True)
class Counter:
    """One rule's counter in the window holding a given moment."""

    scoped: ScopedRule
    key: str
    limit: int
    start: float
    end: float
    stamp: str  # the window's name in its key

    @property
    def unit(self) -> Unit:
        return self.scoped.rule.unit


# Every quota counter and receipt shares one Redis Cluster hash tag: a request's counters
# (the user's, keyed by the user alone, and the team pool's) sit in one slot, so the
# check-and-charge script stays a single atomic step. A user's counters must not depend on
# the team string, or each new team would be a fresh allowance.
QUOTA_TAG = "q"


def counter_key(team: str, scoped: ScopedRule, stamp: str) -> str:
    """`gw:v1:quota:{q}:<scope>:<subject>:<unit>:<window>:<stamp>` (`team` is not in it:
    the subject of a team pool is its team)."""
    rule = scoped.rule
    return make_key("quota", QUOTA_TAG, scoped.scope, scoped.subject, rule.unit, rule.window, stamp)


def counters(
    rules: Sequence[ScopedRule], team: str, now: float, calendar: Calendar
) -> list[Counter]:
    """The live counter of every rule at `now`, on `calendar`'s windows."""
    out = []
    for scoped in rules:
        span = calendar.span(scoped.rule.window, now)
        limit = math.floor(scoped.rule.limit * UNIT_SCALE[scoped.rule.unit] + 1e-9)
        key = counter_key(team, scoped, span.stamp)
        out.append(Counter(scoped, key, limit, span.start, span.end, span.stamp))
    return out


def usd_amount(dollars: float) -> int:
    """US dollars in the `usd` counters' unit (micro-dollars)."""
    return round(dollars * UNIT_SCALE["usd"])


def request_cost(n: int, image_price: float) -> dict[Unit, int]:
    """What one request of `n` images at `image_price` USD each reserves, in stored units."""
    return estimated_cost(n, n * image_price)


def estimated_cost(n: int, usd: float) -> dict[Unit, int]:
    """What one request of `n` images estimated at `usd` in all reserves, in stored units."""
    return {"requests": 1, "images": n, "usd": usd_amount(usd)}


class RuleState(NamedTuple):
    """A rule's state as callers and dashboards see it (real units, not scaled)."""

    scope: str
    subject: str
    unit: Unit
    window: Window
    limit: float
    used: float
    remaining: float
    resets_at: float
    starts_at: float  # the window's start: with resets_at, its length


def rule_state(counter: Counter, used: int) -> RuleState:
    """The caller-facing state of `counter` given its stored usage."""
    scale = UNIT_SCALE[counter.unit]
    rule = counter.scoped.rule
    return RuleState(
        counter.scoped.scope,
        counter.scoped.subject,
        rule.unit,
        rule.window,
        rule.limit,
        used / scale,
        max(0, counter.limit - used) / scale,
        counter.end,
        counter.start,
    )
