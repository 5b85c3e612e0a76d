"""The per-process budget of upload bytes held in memory: waits, order, overload, cleanup."""

from __future__ import annotations

import asyncio

import pytest

from gateway.budget import UploadBudget
from gateway.errors import Overloaded


async def _hold(
    budget: UploadBudget, nbytes: int, log: list[str], name: str, release: asyncio.Event
) -> None:
    async with budget.hold(nbytes):
        log.append(name)
        await release.wait()


def test_requests_within_the_budget_do_not_wait() -> None:
    """Holds that fit together are all granted at once."""

    async def scenario() -> list[str]:
        budget, log, release = UploadBudget(10, wait_seconds=1), [], asyncio.Event()
        tasks = [asyncio.create_task(_hold(budget, 5, log, n, release)) for n in "ab"]
        await asyncio.sleep(0.01)
        granted = list(log)
        release.set()
        await asyncio.gather(*tasks)
        assert budget.free == 10
        return granted

    assert asyncio.run(scenario()) == ["a", "b"]


def test_over_the_budget_requests_wait_their_turn_in_arrival_order() -> None:
    """Past the budget, a request starts only when enough is released, first come first served,
    even when a later, smaller one would fit earlier."""

    async def scenario() -> list[str]:
        budget, log = UploadBudget(10, wait_seconds=1), []
        first, second, third = asyncio.Event(), asyncio.Event(), asyncio.Event()
        a = asyncio.create_task(_hold(budget, 8, log, "a", first))
        await asyncio.sleep(0)
        b = asyncio.create_task(_hold(budget, 10, log, "b", second))
        await asyncio.sleep(0)
        c = asyncio.create_task(_hold(budget, 1, log, "c", third))
        await asyncio.sleep(0.01)
        assert log == ["a"]  # c would fit next to a, but b came first
        first.set()
        await asyncio.sleep(0.01)
        assert log == ["a", "b"]
        second.set()
        third.set()
        await asyncio.gather(a, b, c)
        return log

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_a_request_larger_than_the_budget_takes_all_of_it() -> None:
    """One upload larger than the whole budget still goes through, alone."""

    async def scenario() -> int:
        budget = UploadBudget(10, wait_seconds=1)
        async with budget.hold(50):
            return budget.free

    assert asyncio.run(scenario()) == 0


def test_waiting_past_the_bound_is_a_retryable_overload() -> None:
    """A request that cannot get its share within wait_seconds is refused with 503, Retry-After."""

    async def scenario() -> None:
        budget, release = UploadBudget(10, wait_seconds=0.05), asyncio.Event()
        holder = asyncio.create_task(_hold(budget, 10, [], "a", release))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as refused:
            async with budget.hold(1):
                pass
        assert refused.value.status == 503 and refused.value.headers["retry-after"] == "1"
        release.set()
        await holder
        assert budget.free == 10

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_the_queue_and_frees_the_way() -> None:
    """A waiter whose caller went away takes nothing and does not block those behind it."""

    async def scenario() -> list[str]:
        budget, log, release = UploadBudget(10, wait_seconds=1), [], asyncio.Event()
        holder = asyncio.create_task(_hold(budget, 6, log, "a", release))
        await asyncio.sleep(0)
        gone = asyncio.create_task(_hold(budget, 10, log, "gone", release))
        await asyncio.sleep(0)
        behind = asyncio.create_task(_hold(budget, 4, log, "c", release))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(holder, behind)
        assert budget.free == 10
        return log

    assert asyncio.run(scenario()) == ["a", "c"]
