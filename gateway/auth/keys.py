"""Gateway API keys: how one is made, the digest it is known by, and the two identity sources
that look keys up: the config's principals and the keys issued at run time.

A key is never stored: the config (and the admin plane, for keys issued at run time) holds
its SHA-256, and a presented key is hashed and looked up by digest, so the lookup's timing
reveals nothing about any stored key. Neither source does any I/O.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from typing import Protocol

from gateway.auth.base import Identity, IdentitySource, Presented
from gateway.settings.config import PrincipalConfig

KEY_PREFIX = "gwk_"
MAX_KEY_LENGTH = 512
CONFIG_KEY_ID = "config"  # what the audit names a config principal's key by (one per user)


def new_key() -> str:
    """A fresh random gateway key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """The SHA-256 hex digest under which a key is configured."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ConfigKeys(IdentitySource):
    """Resolves `Authorization: Bearer <key>` against the configured principals (and the
    demo key, if one is set)."""

    bearer_limit = MAX_KEY_LENGTH

    def __init__(
        self,
        principals: Iterable[PrincipalConfig],
        demo_key: str | None = None,
        demo_admin_key: str | None = None,
    ) -> None:
        self._by_digest = {
            p.key_sha256: Identity(p.user, p.team, p.role, key_id=CONFIG_KEY_ID) for p in principals
        }
        if demo_key:
            self._by_digest[key_digest(demo_key)] = Identity("demo", "demo", key_id=CONFIG_KEY_ID)
        if demo_admin_key:  # `serve --demo-key` on the sandbox: the console, locally
            self._by_digest[key_digest(demo_admin_key)] = Identity(
                "demo-admin", "demo", "admin", key_id=CONFIG_KEY_ID
            )

    def identities(self) -> list[Identity]:
        """Every configured identity, ordered by user."""
        return sorted(self._by_digest.values(), key=lambda identity: identity.user)

    def lookup(self, key: str) -> Identity | None:
        """The identity configured for `key`, or None."""
        return self._by_digest.get(key_digest(key))

    async def identify(self, presented: Presented) -> Identity | None:
        return self.lookup(presented.bearer())


class KeyTable(Protocol):
    """Keys issued at run time, as the admin plane's view of them holds them in memory."""

    async def lookup(self, key: str) -> Identity | None:
        """The identity of a live key, or None; raises `RuntimeKeysUnavailable` (503) when
        it cannot confirm that a key it holds is still live."""

    def identities(self) -> list[Identity]:
        """The identities of every live key, one per user and team, by user."""


class RuntimeKeys(IdentitySource):
    """Resolves the bearer value against the keys the admin plane issued at run time."""

    bearer_limit = MAX_KEY_LENGTH

    def __init__(self, table: KeyTable) -> None:
        self._table = table

    def identities(self) -> list[Identity]:
        return self._table.identities()

    async def identify(self, presented: Presented) -> Identity | None:
        return await self._table.lookup(presented.bearer())
