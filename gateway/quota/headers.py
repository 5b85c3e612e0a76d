"""Every quota header a caller reads, built here and only here: the state of the rules an
answer was charged against (x-ratelimit-*, and the IETF RateLimit-Policy / RateLimit
fields), and the refusal of a request over a rule (429, Retry-After).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from gateway.errors import QuotaExceeded, RateLimited
from gateway.quota.counters import Counter, RuleState
from gateway.vocabulary import Unit, Window

SHORT_WINDOWS: frozenset[Window] = frozenset({"minute", "hour"})
Kind = Literal["rate", "quota"]


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
            f"{name};q={int(s.limit)};w={round(s.resets_at - s.starts_at)}"
            for name, s in zip(names, counted, strict=True)
        )
        headers["ratelimit"] = ", ".join(
            f"{name};r={int(s.remaining)};t={max(0, round(s.resets_at - now))}"
            for name, s in zip(names, counted, strict=True)
        )
    return headers


def refusal(refused: Sequence[Counter], states: Sequence[RuleState], now: float) -> RateLimited:
    """The 429 for a refused request: waiting for the last refused counter to reset, with
    the state of every rule it was checked against (`states`)."""
    wait = max(counter.end for counter in refused) - now
    seconds = max(1, math.ceil(wait))
    headers = {"retry-after": str(seconds), "retry-after-ms": str(max(1, math.ceil(wait * 1000)))}
    names = ", ".join(f"{c.scoped.scope} {c.unit} per {c.scoped.rule.window}" for c in refused)
    error: RateLimited
    if any(kind_of(counter) == "quota" for counter in refused):
        message = f"Quota exhausted ({names}). It resets in {duration(wait)}."
        error = QuotaExceeded(message, headers=headers)
    else:
        if seconds > 60:
            headers["x-should-retry"] = "false"
        message = f"Rate limit reached ({names}). Retry in {duration(wait)}."
        error = RateLimited(message, headers=headers)
    error.headers.update(quota_headers(states, now))
    return error


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
