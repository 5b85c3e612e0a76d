"""The per-process budget of upload bytes held in memory, and the per-caller cap: what a
lease holds, the order of waits, no deadlock, no starvation, overload, cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from gateway.errors import Overloaded
from gateway.uploads import Lease, UploadBudget

T = TypeVar("T")
BOUND = 5.0  # seconds a step may take before the test fails (nothing here should wait)


async def _turns(count: int = 5) -> None:
    """Let the event loop run every task that is ready, a few times over."""
    for _ in range(count):
        await asyncio.sleep(0)


async def _bounded(step: Awaitable[T]) -> T:
    async with asyncio.timeout(BOUND):
        return await step


async def _upload(
    budget: UploadBudget, caller: str, chunks: list[int], done: asyncio.Event
) -> Lease:
    """One request: take a lease, receive `chunks`, hold them until `done`."""
    async with budget.lease(caller) as lease:
        for nbytes in chunks:
            await lease.take(nbytes)
        await done.wait()
        return lease


def test_a_lease_holds_what_was_received_and_gives_it_back_when_released() -> None:
    """Bytes count as they arrive, and all of them are free again the moment the lease is
    released (the upload was sent), not when the request ends."""

    async def scenario() -> list[int]:
        budget = UploadBudget(100, wait_seconds=BOUND, per_caller=4)
        seen = []
        async with budget.lease("alice") as lease:
            await lease.take(10)
            await lease.take(15)
            seen.append(budget.free)
            lease.release()
            seen.append(budget.free)
            await lease.take(50)  # after release nothing is counted
            seen.append(budget.free)
        return seen

    assert asyncio.run(scenario()) == [75, 100, 100]


def test_readers_all_half_way_through_never_deadlock() -> None:
    """Two uploads that each hold part of the budget and both need more than is left: the
    oldest goes on (overdrawing by its chunk), and the other follows once it is released."""

    async def scenario() -> list[str]:
        budget = UploadBudget(10, wait_seconds=BOUND, per_caller=4)
        log: list[str] = []
        async with budget.lease("a") as first, budget.lease("b") as second:
            await first.take(6)
            await second.take(4)
            waiting = asyncio.create_task(second.take(5))
            await _turns()
            log.append("b waits" if not waiting.done() else "b went on")
            await _bounded(first.take(5))  # the oldest: never waits
            log.append("a went on")
            first.release()
            await _bounded(waiting)
            log.append("b went on")
        return log

    assert asyncio.run(scenario()) == ["b waits", "a went on", "b went on"]


def test_a_slow_upload_holds_only_what_it_sent_so_small_ones_pass() -> None:
    """A trickling upload without a length holds the bytes it has sent, not the 4 MiB cap:
    small uploads behind it are not kept waiting."""

    async def scenario() -> float:
        budget = UploadBudget(100, wait_seconds=BOUND, per_caller=4)
        async with budget.lease("slow") as slow:
            await slow.take(1)
            done = asyncio.Event()
            done.set()
            small = [_upload(budget, f"caller{i}", [30], done) for i in range(3)]
            await _bounded(asyncio.gather(*small))
            return budget.free

    assert asyncio.run(scenario()) == 99


def test_past_the_budget_readers_wait_their_turn_in_arrival_order() -> None:
    """When the budget is spent, waiting readers are served first come first served."""

    async def scenario() -> list[str]:
        budget = UploadBudget(10, wait_seconds=BOUND, per_caller=4)
        log: list[str] = []
        async with budget.lease("a") as a, budget.lease("b") as b, budget.lease("c") as c:
            await a.take(10)

            async def take(lease: Lease, nbytes: int, name: str) -> None:
                await lease.take(nbytes)
                log.append(name)

            second = asyncio.create_task(take(b, 8, "b"))
            await _turns()
            third = asyncio.create_task(take(c, 1, "c"))
            await _turns()
            assert log == []  # c would fit next to nothing, but b came first
            a.release()
            await _bounded(asyncio.gather(second, third))
        return log

    assert asyncio.run(scenario()) == ["b", "c"]


def test_a_caller_holds_at_most_its_cap_of_uploads_and_others_are_not_held_back() -> None:
    """Past `per_caller` leases, a caller's next upload waits for one of its own to end;
    another caller's upload is served meanwhile."""

    async def scenario() -> list[str]:
        budget = UploadBudget(100, wait_seconds=BOUND, per_caller=2)
        done, log = asyncio.Event(), []
        own = [asyncio.create_task(_upload(budget, "greedy", [1], done)) for _ in range(3)]
        await _turns()
        log.append(f"{budget.leases} leases")
        other = asyncio.Event()
        other.set()
        await _bounded(_upload(budget, "other", [1], other))
        log.append("other served")
        done.set()
        await _bounded(asyncio.gather(*own))
        log.append(f"{budget.leases} leases, {budget.free} free")
        return log

    assert asyncio.run(scenario()) == ["2 leases", "other served", "0 leases, 100 free"]


def test_waiting_past_the_bound_is_a_retryable_overload_that_closes_the_connection() -> None:
    """A reader that gets no room within wait_seconds is refused with 503 and Retry-After,
    and the connection closes (its body is not all read)."""

    async def scenario() -> None:
        budget = UploadBudget(10, wait_seconds=0.05, per_caller=4)
        async with budget.lease("a") as a, budget.lease("b") as b:
            await a.take(10)
            with pytest.raises(Overloaded) as refused:
                await b.take(1)
        error = refused.value
        assert error.status == 503 and error.headers["retry-after"] == "1"
        assert error.headers["connection"] == "close"
        assert budget.free == 10 and budget.leases == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_the_queue_and_frees_the_way() -> None:
    """A waiter whose caller went away takes nothing and does not block those behind it,
    and a caller's cancelled wait for its cap gives nothing away."""

    async def scenario() -> tuple[int, int]:
        budget = UploadBudget(10, wait_seconds=BOUND, per_caller=1)
        async with budget.lease("a") as a, budget.lease("b") as b, budget.lease("c") as c:
            await a.take(6)
            gone = asyncio.create_task(b.take(10))
            await _turns()
            behind = asyncio.create_task(c.take(4))
            await _turns()
            gone.cancel()
            await _bounded(behind)
            capped = asyncio.create_task(_upload(budget, "a", [1], asyncio.Event()))
            await _turns()
            capped.cancel()
            await _turns()
        return budget.free, budget.leases

    assert asyncio.run(scenario()) == (10, 0)


def test_a_callers_place_is_free_once_its_upload_is_sent_not_when_answered() -> None:
    """A caller at its cap can start another upload as soon as one of its uploads has been
    sent upstream (its lease released), while that request still waits for the answer."""

    async def scenario() -> int:
        budget = UploadBudget(100, wait_seconds=BOUND, per_caller=1)
        async with budget.lease("alice") as first:
            await first.take(10)
            first.release()  # sent: the request now waits on the upstream
            async with asyncio.timeout(BOUND), budget.lease("alice") as second:
                await second.take(10)
                return budget.leases

    assert asyncio.run(scenario()) == 1
