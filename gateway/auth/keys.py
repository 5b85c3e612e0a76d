"""Gateway API keys: how one is made, and the digest under which it is known.

A key is never stored: the config (and the admin plane, for keys issued at run time) holds
its SHA-256, and a presented key is hashed and looked up by digest, so the lookup's timing
reveals nothing about any stored key.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "gwk_"


def new_key() -> str:
    """A fresh random gateway key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """The SHA-256 hex digest under which a key is configured."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
