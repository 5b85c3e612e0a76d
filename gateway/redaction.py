"""What of the upstream's words may reach a caller or a log: one place that decides.

An upstream error body is rebuilt, never relayed: its message is cut of anything that could
name or unlock the company's account (keys, organization and project ids in any spelling,
the configured organization and project, signed URLs, long key-like tokens), and its
`code`, `type` and `param` are kept only when they are ones OpenAI's image endpoints use,
else replaced by a generic value. URLs the gateway logs lose their credentials, and paths
it logs lose anything shaped like a key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

MAX_MESSAGE_CHARS = 500
REDACTED = "[redacted]"
# URLs go whole: a signed URL's query (sig=...) is its credential, and its path names the org.
# Account ids are org-/org_/proj-/proj_/user-/sess- prefixes; anything of 24+ characters
# mixing letters and digits is taken for a key, a token or an id.
_CREDENTIAL = re.compile(
    r"[a-z][a-z0-9+.-]*://\S+"
    r"|\bsk[-_][A-Za-z0-9_\-*]{4,}"
    r"|\bBearer\s+\S+"
    r"|\b(?:org|proj|user|sess|key)[-_][A-Za-z0-9_\-]{4,}"
    r"|\b(?:api[-_]?)?key\s*[=:]\s*\S+"
    r"|\b(?=[A-Za-z0-9_\-]*[0-9])(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{24,}",
    re.I,
)
# What a caller may paste where a name or an id belongs: a gateway key, an OpenAI key, a JWT
# (long enough that a name like `sk-team` is not taken for one).
_KEY_SHAPED = re.compile(
    r"gwk_[A-Za-z0-9_\-]{8,}"
    r"|\bsk-[A-Za-z0-9_\-]{20,}"
    r"|\beyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"
)
# What OpenAI's image endpoints answer in `code`, `type` and `param`; anything else the
# upstream sends there (an echoed key, an internal name) is replaced.
KNOWN_CODES = frozenset(
    {
        "invalid_image",
        "invalid_image_format",
        "invalid_image_mode",
        "invalid_image_dimensions",
        "image_too_large",
        "string_above_max_length",
        "invalid_value",
        "invalid_type",
        "missing_required_parameter",
        "unknown_parameter",
        "duplicate_parameter",
        "integer_above_max_value",
        "integer_below_min_value",
        "content_policy_violation",
        "moderation_blocked",
        "image_generation_user_error",
        "rate_limit_exceeded",
        "insufficient_quota",
        "billing_hard_limit_reached",
    }
)
KNOWN_TYPES = frozenset(
    {
        "invalid_request_error",
        "image_generation_user_error",
        "requests",
        "tokens",
        "insufficient_quota",
    }
)
KNOWN_PARAMS = frozenset(
    {"image", "n", "size", "response_format", "model", "user"}
    | {"image[]", "mask", "prompt", "quality", "background", "moderation", "output_format"}
    | {"output_compression", "input_fidelity", "stream", "partial_images"}
)


def sanitise(message: str, secrets: Iterable[str] = ()) -> str:
    """An upstream message made safe to show a caller: no credentials, bounded length."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, REDACTED)
    return _CREDENTIAL.sub(REDACTED, message)[:MAX_MESSAGE_CHARS]


def looks_like_secret(text: str) -> bool:
    """Whether `text` holds something shaped like a key or a token."""
    return _KEY_SHAPED.search(text) is not None


def redact_keys(text: str) -> str:
    """`text` (a request path, say) with every key- or token-shaped part cut out."""
    return _KEY_SHAPED.sub(REDACTED, text)


class ErrorFields(NamedTuple):
    """The `type`, `code` and `param` a caller sees for an upstream refusal."""

    type: str
    code: str
    param: str | None


def known_fields(status: int, type_: object, code: object, param: object) -> ErrorFields:
    """The upstream's fields where OpenAI uses them, else generic ones for `status`."""
    rate_limited = status == 429
    generic_type = "requests" if rate_limited else "invalid_request_error"
    generic_code = "rate_limit_exceeded" if rate_limited else "invalid_request"
    return ErrorFields(
        type_ if isinstance(type_, str) and type_ in KNOWN_TYPES else generic_type,
        code if isinstance(code, str) and code in KNOWN_CODES else generic_code,
        param if isinstance(param, str) and param in KNOWN_PARAMS else None,
    )


def without_credentials(url: str) -> str:
    """`url` without the user:password@ part (for logs and printed settings)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))
