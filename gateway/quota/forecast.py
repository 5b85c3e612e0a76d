"""Where a period's spend is heading: the spend so far, continued at the period's run rate
to its end. One formula for the notifications, the usage answers and the console's chart.
"""

from __future__ import annotations


def projection(used: float, start: float, end: float, now: float) -> float:
    """The spend at `end` if the period [start, end) goes on as it went from `start` to
    `now`; the spend itself once the period is over (or before it began)."""
    if now >= end or now <= start:
        return used
    return used * (end - start) / (now - start)
