"""Each replica's view of the admin plane: runtime keys, quota rules and model settings,
kept fresh.

Requests never wait on the admin store: keys are looked up and rules read from a snapshot
in memory. A background task replaces the snapshot when the generation moves, woken by the
store's change message (pub/sub) and, should a message be lost, by a poll every
`poll_seconds`; so a change reaches every replica and worker within about a second. With
the store unreachable the last snapshot stays in force (and the config's keys and rules,
which never depend on it).

Key use is sampled: a lookup notes the time in memory, and the notes are written at most
once per `flush_seconds`, never once per request. What the gateway does on its own and
audits (a model failover) is written in the background: a request never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from gateway.admin.records import KeyRecord, Snapshot, iso
from gateway.admin.store import AdminStore
from gateway.auth.base import Identity
from gateway.auth.keys import key_digest
from gateway.quota.policy import QuotaPolicy, Scope, with_overrides
from gateway.settings.config import QuotasConfig
from gateway.store.base import StoreError
from gateway.upstream.catalogue import RuntimeModels

log = logging.getLogger("gateway.admin")
audit_log = logging.getLogger("gateway.audit")
Clock = Callable[[], float]


class RuntimeState:
    """The snapshot in force on this replica, its key index and its quota policy."""

    def __init__(
        self,
        store: AdminStore,
        quotas: QuotasConfig,
        *,
        clock: Clock = time.time,
        poll_seconds: float = 0.5,
        flush_seconds: float = 60.0,
    ) -> None:
        self.store, self._config_quotas, self.clock = store, quotas, clock
        self._poll, self._flush = poll_seconds, flush_seconds
        self._used: dict[str, float] = {}
        self._flushed_at = clock()
        self._task: asyncio.Task[None] | None = None
        self._recording: set[asyncio.Task[None]] = set()
        self._adopt(Snapshot())

    def _adopt(self, snapshot: Snapshot) -> None:
        index: dict[str, tuple[KeyRecord, bool]] = {}
        for record in snapshot.keys.values():
            index[record.key_sha256] = (record, False)
            if record.previous_sha256 is not None:
                index[record.previous_sha256] = (record, True)
        self.snapshot, self._index = snapshot, index
        thresholds = {subject: rule.thresholds for subject, rule in snapshot.alerts.items()}
        quotas = with_overrides(self._config_quotas, snapshot.overrides)
        self._policy = QuotaPolicy(quotas, thresholds)

    def policy(self) -> QuotaPolicy:
        """The quota rules in force: the config's with the runtime ones on top."""
        return self._policy

    def models(self) -> RuntimeModels:
        """The model lists and prices set at run time (the catalogue's runtime part)."""
        return self.snapshot.models

    def record(self, entry: Mapping[str, Any]) -> None:
        """Audit something the gateway did on its own, in the background (logged as any
        audit entry); a store that is down loses it from the trail, not from the log."""
        now = self.clock()
        entry = {**entry, "time": iso(now)}
        task = asyncio.ensure_future(self._record(entry, now))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _record(self, entry: Mapping[str, Any], now: float) -> None:
        entry_id: str | None = None
        try:
            entry_id = await self.store.record(entry, now)
        except StoreError as exc:
            log.warning("audit entry not stored (%r); it is in this log only", exc)
        audit_log.info(json.dumps({"audit_id": entry_id, **entry}, sort_keys=True))

    def lookup(self, key: str) -> Identity | None:
        """The identity of a live runtime key (or of its previous secret, within its grace
        period), else None. No I/O: the use is only noted."""
        found = self._index.get(key_digest(key))
        if found is None:
            return None
        record, previous = found
        now = self.clock()
        if not record.live(now) or (previous and (record.previous_expires_at or 0) <= now):
            return None
        self._used[record.id] = now
        return Identity(record.user, record.team, record.role, key_id=record.id, grace=previous)

    def identities(self) -> list[Identity]:
        """The identities of every live runtime key, one per user and team, by user."""
        now = self.clock()
        live = {
            Identity(r.user, r.team, r.role) for r in self.snapshot.keys.values() if r.live(now)
        }
        return sorted(live, key=lambda identity: (identity.user, identity.team))

    def source(self, scope: Scope, subject: str, unit: str, window: str) -> str:
        """Where a rule in force comes from: `runtime` or `config`."""
        rules = self.snapshot.overrides.get((scope, subject), ())
        runtime = any(rule.unit == unit and rule.window == window for rule in rules)
        return "runtime" if runtime else "config"

    def unflushed_use(self) -> dict[str, float]:
        """Uses noted here and not yet written to the store."""
        return dict(self._used)

    async def refresh(self) -> None:
        """Adopt the store's state if its generation moved; keep the last one if it fails."""
        try:
            if await self.store.generation() != self.snapshot.generation:
                self._adopt(await self.store.snapshot())
            if self._used and self.clock() - self._flushed_at >= self._flush:
                await self.flush_use()
        except StoreError as exc:
            log.debug("admin state not refreshed, keeping the last one: %r", exc)

    async def flush_use(self) -> None:
        """Write the noted key uses (raises `StoreError`; the notes are kept then)."""
        used, self._used = self._used, {}
        try:
            await self.store.mark_used(used)
        except StoreError:
            self._used = {**used, **self._used}
            raise
        self._flushed_at = self.clock()

    async def _follow(self) -> None:
        while True:
            await self.store.wait_for_change(self._poll)
            await self.refresh()

    async def start(self) -> None:
        """Load the state now (if the store answers), then follow it in the background."""
        await self.refresh()
        self._task = asyncio.create_task(self._follow())

    async def close(self) -> None:
        """Stop following; write the last audit entries and noted uses if the store answers."""
        if self._recording:
            await asyncio.wait(set(self._recording), timeout=5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(StoreError):
            await self.flush_use()
