"""Each replica's view of the admin plane: runtime keys, quota rules and model settings,
kept fresh.

Requests do not wait on the admin store: keys are looked up and rules read from a snapshot
in memory. A background task replaces the snapshot when the generation moves, woken by the
store's change message (pub/sub) and, should a message be lost, by a poll every
`poll_seconds`; every read is bounded (`READ_TIMEOUT_SECONDS`), so a connection gone silent
costs one short wait and is replaced, and a change reaches every replica and worker within
about a second. A change that arrives without its message means the message channel may
have gone silent: it is opened again.

Revocation must hold, so the view of the runtime keys is trusted only while confirmed: a
read of the store's generation that began at most `CONFIRM_WITHIN_SECONDS` ago found it
current. Past that, a request presenting a runtime key makes the view confirm itself (one
bounded read, shared by every request waiting on it), and when it cannot, the key is
refused with a 503 (`RuntimeKeysUnavailable`) rather than served on a view that may miss a
revoke. Quota rules and model settings stay in force from the last snapshot, and the
config's keys and rules never depend on the store.

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
from gateway.errors import RuntimeKeysUnavailable
from gateway.quota.policy import QuotaPolicy, Scope, with_overrides
from gateway.settings.config import QuotasConfig
from gateway.store.base import StoreError
from gateway.upstream.catalogue import RuntimeModels

log = logging.getLogger("gateway.admin")
audit_log = logging.getLogger("gateway.audit")
Clock = Callable[[], float]
CONFIRM_WITHIN_SECONDS = 1.0  # the oldest confirmation runtime keys are honoured on
READ_TIMEOUT_SECONDS = 0.5  # one generation read's bound: a silent connection is dropped
SNAPSHOT_TIMEOUT_SECONDS = 2.0  # one snapshot read's bound


class RuntimeState:
    """The snapshot in force on this replica, its key index and its quota policy."""

    def __init__(
        self,
        store: AdminStore,
        quotas: QuotasConfig,
        *,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        poll_seconds: float = 0.5,
        flush_seconds: float = 60.0,
    ) -> None:
        self.store, self._config_quotas, self.clock = store, quotas, clock
        self._monotonic, self._poll, self._flush = monotonic, poll_seconds, flush_seconds
        self._confirmed_at: float | None = None  # when the last confirming read began
        self._reading = asyncio.Lock()  # one read of the store at a time
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

    async def lookup(self, key: str) -> Identity | None:
        """The identity of a live runtime key (or of its previous secret, within its grace
        period), else None. No I/O while the view is confirmed; past that, one bounded
        confirming read, and `RuntimeKeysUnavailable` (503) if it fails: a key this view
        says is live may have been revoked since. The use is only noted."""
        digest = key_digest(key)
        if self._live(digest) is None:
            return None  # refused on any view: a revoke or an expiry is never undone
        if not await self.confirm():
            raise RuntimeKeysUnavailable()
        found = self._live(digest)  # the confirming read may have moved the view
        if found is None:
            return None
        record, previous = found
        self._used[record.id] = self.clock()
        return Identity(record.user, record.team, record.role, key_id=record.id, grace=previous)

    def _live(self, digest: str) -> tuple[KeyRecord, bool] | None:
        found = self._index.get(digest)
        if found is None:
            return None
        record, previous = found
        now = self.clock()
        if not record.live(now) or (previous and (record.previous_expires_at or 0) <= now):
            return None
        return found

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

    def confirmed(self) -> bool:
        """Whether a read that began at most `CONFIRM_WITHIN_SECONDS` ago found this view
        current."""
        at = self._confirmed_at
        return at is not None and self._monotonic() - at <= CONFIRM_WITHIN_SECONDS

    async def confirm(self) -> bool:
        """Whether the view is confirmed, reading the store's generation first if it is not
        (a read already under way is waited for, never doubled)."""
        if self.confirmed():
            return True
        if self._reading.locked():
            async with self._reading:
                pass
        else:
            await self.refresh()
        return self.confirmed()

    async def refresh(self) -> bool:
        """Adopt the store's state if its generation moved, each read bounded; keep the last
        one if a read fails. Whether the view moved."""
        async with self._reading:
            began = self._monotonic()
            try:
                moved = await self._read()
            except (StoreError, TimeoutError) as exc:
                log.debug("admin state not refreshed, keeping the last one: %r", exc)
                return False
            self._confirmed_at = began
        return moved

    async def _read(self) -> bool:
        generation = await asyncio.wait_for(self.store.generation(), READ_TIMEOUT_SECONDS)
        if generation == self.snapshot.generation:
            return False
        self._adopt(await asyncio.wait_for(self.store.snapshot(), SNAPSHOT_TIMEOUT_SECONDS))
        return True

    async def flush_use(self) -> None:
        """Write the noted key uses (raises `StoreError`; the notes are kept then)."""
        used, self._used = self._used, {}
        try:
            await self.store.mark_used(used)
        except BaseException:  # a failure, or a bounded wait given up: keep the notes
            self._used = {**used, **self._used}
            raise
        self._flushed_at = self.clock()

    async def _follow(self) -> None:
        while True:
            told = await self.store.wait_for_change(self._poll)
            if await self.refresh() and not told:
                # A change came without its message: the channel may have gone silent.
                await self.store.listen_again()
            if self._used and self.clock() - self._flushed_at >= self._flush:
                with contextlib.suppress(StoreError, TimeoutError):
                    await asyncio.wait_for(self.flush_use(), SNAPSHOT_TIMEOUT_SECONDS)

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
