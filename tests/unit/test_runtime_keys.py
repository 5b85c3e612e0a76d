"""A replica honours runtime keys only on a view of them it has confirmed within a second
(gateway/admin/state.py), on a monotonic clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from gateway.admin.operations import Actor, AdminOps
from gateway.admin.state import CONFIRM_WITHIN_SECONDS, RuntimeState
from gateway.admin.store import MemoryAdminStore
from gateway.errors import RuntimeKeysUnavailable
from gateway.settings.config import QuotasConfig
from gateway.store.base import StoreError

ACTOR = Actor("grafana", "req_test", None)


class FlakyStore(MemoryAdminStore):
    """The in-process admin store, whose generation reads can be made to fail or hang, and
    are counted."""

    def __init__(self) -> None:
        super().__init__(dict)
        self.mode = "answer"
        self.reads = 0

    async def generation(self) -> int:
        self.reads += 1
        if self.mode == "fail":
            raise StoreError("redis: ConnectionError")
        if self.mode == "hang":
            await asyncio.Event().wait()
        return await super().generation()


class Monotonic:
    """A monotonic clock that moves when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(
    scenario: Callable[[RuntimeState, FlakyStore, Monotonic, str], Coroutine[Any, Any, None]],
) -> None:
    """Run `scenario` with a replica's state that has one live runtime key (its secret)."""

    async def main() -> None:
        store, clock = FlakyStore(), Monotonic()
        state = RuntimeState(store, QuotasConfig(), monotonic=clock)
        await state.refresh()
        created = await AdminOps(state).create_key(
            {"user": "dave", "team": "t", "new_team": True}, ACTOR
        )
        await scenario(state, store, clock, created.secret)

    asyncio.run(main())


def test_a_view_confirmed_within_the_bound_is_used_without_a_read() -> None:
    """Within a second of the last confirming read, a runtime key costs no store read."""

    async def scenario(state: RuntimeState, store: FlakyStore, clock: Monotonic, key: str) -> None:
        store.mode, reads = "fail", store.reads
        clock.now += CONFIRM_WITHIN_SECONDS
        found = await state.lookup(key)
        assert found is not None and found.user == "dave" and store.reads == reads

    run(scenario)


def test_past_the_bound_a_key_confirms_the_view_itself_or_is_refused() -> None:
    """Past the bound, the key's lookup reads the generation: the store failing, the key is
    refused with 503 runtime_keys_unavailable; answering again, it is honoured at once."""

    async def scenario(state: RuntimeState, store: FlakyStore, clock: Monotonic, key: str) -> None:
        store.mode = "fail"
        clock.now += CONFIRM_WITHIN_SECONDS + 0.01
        with pytest.raises(RuntimeKeysUnavailable):
            await state.lookup(key)
        store.mode = "answer"
        assert await state.lookup(key) is not None

    run(scenario)


def test_many_requests_on_a_silent_store_share_one_bounded_read() -> None:
    """Twenty lookups at once with the store's connection silent: one generation read,
    given up after its bound, and every one of them refused (503), none served."""

    async def scenario(state: RuntimeState, store: FlakyStore, clock: Monotonic, key: str) -> None:
        store.mode, reads = "hang", store.reads
        clock.now += CONFIRM_WITHIN_SECONDS + 0.01
        outcomes = await asyncio.gather(
            *(state.lookup(key) for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(o, RuntimeKeysUnavailable) for o in outcomes)
        assert store.reads == reads + 1

    run(scenario)


def test_a_revoke_seen_by_the_confirming_read_refuses_the_key() -> None:
    """A revoke written by another replica while this one's view aged is found by the
    key's own confirming read: the key is refused (401), not served on the old view."""

    async def scenario(state: RuntimeState, store: FlakyStore, clock: Monotonic, key: str) -> None:
        other = RuntimeState(store, QuotasConfig())  # another replica on the same store
        await other.refresh()
        key_id = next(iter(state.snapshot.keys))
        await AdminOps(other).revoke_key(key_id, ACTOR)
        clock.now += CONFIRM_WITHIN_SECONDS + 0.01
        assert await state.lookup(key) is None

    run(scenario)


class SilentChannel(FlakyStore):
    """A store whose change messages never arrive (its pub/sub connection went silent),
    counting how often the replica opens the channel again."""

    def __init__(self, silent: bool) -> None:
        super().__init__()
        self.silent, self.reopened = silent, 0

    async def wait_for_change(self, seconds: float) -> bool:
        if self.silent:
            await asyncio.sleep(seconds)
            return False
        return await super().wait_for_change(seconds)

    async def listen_again(self) -> None:
        self.reopened += 1


@pytest.mark.parametrize("silent", [True, False])
def test_a_change_that_came_without_its_message_reopens_the_channel(silent: bool) -> None:
    """The poll finds a write whose change message never came: the replica opens its
    message channel again; a write announced as usual leaves the channel alone."""

    async def main() -> None:
        store = SilentChannel(silent)
        # Announced writes are waited for with a long poll: only their message wakes it.
        state = RuntimeState(store, QuotasConfig(), poll_seconds=0.01 if silent else 30.0)
        await state.start()
        writer = RuntimeState(store, QuotasConfig())
        body = {"user": "dave", "team": "t", "new_team": True}
        await AdminOps(writer).create_key(body, ACTOR)
        for _ in range(200):
            if state.snapshot.keys:
                break
            await asyncio.sleep(0.01)
        await state.close()
        assert state.snapshot.keys and store.reopened == (1 if silent else 0)

    asyncio.run(main())
