"""How every webhook delivery is signed, the way well-known webhook providers sign theirs
(Stripe's `t=...,v1=...` header, Slack's `v0=` signature): an HMAC-SHA256, under the
webhook's own secret, of the delivery's timestamp, a dot and the exact body bytes.

A receiver recomputes it from the raw body and the timestamp header, compares in constant
time, and refuses a timestamp older than a few minutes (a replayed delivery). docs/alerts.md
shows it in a few lines of Python.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE = "x-gateway-signature"  # v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
TIMESTAMP = "x-gateway-timestamp"  # Unix seconds when this attempt was signed
DELIVERY = "x-gateway-delivery"  # the delivery's id, the same on every retry of it
EVENT = "x-gateway-event"  # budget.threshold_crossed | webhook.test


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=` and the hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    signed = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str, timestamp: int, body: bytes, delivery: str, event: str
) -> dict[str, str]:
    """The headers of one signed attempt."""
    return {
        "content-type": "application/json",
        TIMESTAMP: str(timestamp),
        SIGNATURE: signature(secret, timestamp, body),
        DELIVERY: delivery,
        EVENT: event,
    }
