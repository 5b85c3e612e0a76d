"""How long and how hard the fault tests run: short in `make test`, long in `make soak`.

`make soak` sets GATEWAY_SOAK=1 (and may set GATEWAY_SOAK_SECONDS): the randomized fault
run lasts minutes instead of seconds, and property tests try many more examples.
"""

from __future__ import annotations

import os

SOAK = os.environ.get("GATEWAY_SOAK") == "1"
SOAK_SECONDS = float(os.environ.get("GATEWAY_SOAK_SECONDS", "300"))
EXAMPLES_FACTOR = 20


def examples(count: int) -> int:
    """`count` property examples in the normal run, `EXAMPLES_FACTOR` times more in a soak."""
    return count * EXAMPLES_FACTOR if SOAK else count


def seconds(normal: float) -> float:
    """How long a randomized run lasts: `normal` seconds, or GATEWAY_SOAK_SECONDS in a soak."""
    return SOAK_SECONDS if SOAK else normal
