"""Quota rules turned into counters, costs and decisions. No I/O of its own.

A request needs every rule that applies to it (the user's and the team's pools). Each rule
is one counter per calendar window (UTC); its key carries the window's stamp, so counters
expire with their window and never need resetting. Amounts are integers: `usd` is counted
in micro-dollars so that charges and refunds add up exactly.

The `QuotaLedger` reserves (check-and-charge, atomically in the store), settles (refunds
what was not delivered) and reports state; the store does the I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from gateway.errors import QuotaExceeded, RateLimited
from gateway.quota.policy import ScopedRule
from gateway.store.base import make_key
from gateway.vocabulary import Unit, Window

UNIT_SCALE: Mapping[Unit, int] = {"requests": 1, "images": 1, "usd": 1_000_000}
WINDOW_SECONDS: Mapping[Window, int] = {"minute": 60, "hour": 3600, "day": 86400}
_STAMP: Mapping[Window, str] = {
    "minute": "%Y%m%d%H%M",
    "hour": "%Y%m%d%H",
    "day": "%Y%m%d",
    "month": "%Y%m",
}
SHORT_WINDOWS: frozenset[Window] = frozenset({"minute", "hour"})
Kind = Literal["rate", "quota"]


def window_bounds(window: Window, now: float) -> tuple[float, float]:
    """The UTC calendar window holding `now`: (start, end) in epoch seconds."""
    if window == "month":
        moment = datetime.fromtimestamp(now, UTC)
        first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        year, month = (first.year + 1, 1) if first.month == 12 else (first.year, first.month + 1)
        return first.timestamp(), first.replace(year=year, month=month).timestamp()
    size = WINDOW_SECONDS[window]
    start = now - now % size
    return start, start + size


@dataclass(frozen=True)
class Counter:
    """One rule's counter in the window holding a given moment."""

    scoped: ScopedRule
    key: str
    limit: int
    start: float
    end: float

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


class _Span(NamedTuple):
    start: float
    end: float
    stamp: str


_current: dict[Window, _Span] = {}


def _span(window: Window, now: float) -> _Span:
    """The window holding `now` and its key stamp, worked out once per window, not per request."""
    span = _current.get(window)
    if span is None or not span.start <= now < span.end:
        start, end = window_bounds(window, now)
        span = _Span(start, end, datetime.fromtimestamp(start, UTC).strftime(_STAMP[window]))
        _current[window] = span
    return span


def counters(rules: Sequence[ScopedRule], team: str, now: float) -> list[Counter]:
    """The live counter of every rule at `now`."""
    out = []
    for scoped in rules:
        span = _span(scoped.rule.window, now)
        limit = math.floor(scoped.rule.limit * UNIT_SCALE[scoped.rule.unit] + 1e-9)
        key = counter_key(team, scoped, span.stamp)
        out.append(Counter(scoped, key, limit, span.start, span.end))
    return out


def usd_amount(dollars: float) -> int:
    """US dollars in the `usd` counters' unit (micro-dollars)."""
    return round(dollars * UNIT_SCALE["usd"])


def request_cost(n: int, image_price: float) -> dict[Unit, int]:
    """What one request of `n` images at `image_price` USD each reserves, in stored units."""
    return {"requests": 1, "images": n, "usd": usd_amount(n * image_price)}


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
    )


def kind_of(counter: Counter) -> Kind:
    """Short request windows are rate limits; everything else is quota."""
    rule = counter.scoped.rule
    return "rate" if rule.unit == "requests" and rule.window in SHORT_WINDOWS else "quota"


def duration(seconds: float) -> str:
    """A reset delay as OpenAI writes it: 1s, 6m0s, 2h3m4s."""
    total = max(1, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def refusal(refused: Sequence[Counter], now: float) -> RateLimited:
    """The 429 for a refused request: waiting for the last refused counter to reset."""
    wait = max(counter.end for counter in refused) - now
    seconds = max(1, math.ceil(wait))
    headers = {"retry-after": str(seconds), "retry-after-ms": str(max(1, math.ceil(wait * 1000)))}
    names = ", ".join(f"{c.scoped.scope} {c.unit} per {c.scoped.rule.window}" for c in refused)
    if any(kind_of(counter) == "quota" for counter in refused):
        return QuotaExceeded(
            f"Quota exhausted ({names}). It resets in {duration(wait)}.", headers=headers
        )
    if seconds > 60:
        headers["x-should-retry"] = "false"
    return RateLimited(f"Rate limit reached ({names}). Retry in {duration(wait)}.", headers=headers)


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
        headers[f"x-ratelimit-reset-{unit}"] = duration(state.resets_at - now)
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
