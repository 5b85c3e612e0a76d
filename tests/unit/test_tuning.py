"""`gateway serve`'s malloc tuning: set for the workers unless the operator chose otherwise."""

from __future__ import annotations

from gateway.server.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD, tune_malloc


def test_thresholds_are_set_for_the_workers() -> None:
    """Workers inherit thresholds above the largest buffer a request holds."""
    env: dict[str, str] = {}
    tune_malloc(env)
    assert env == {
        "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
        "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
    }
    assert MMAP_THRESHOLD > 2 * 4 * 2**20  # an upload and its rebuilt body stay in the heap


def test_the_operators_own_values_win() -> None:
    """MALLOC_*_ values already in the environment are left as they are, even unusable ones."""
    env = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "not a number"}
    tune_malloc(env)
    assert env == {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "not a number"}
