"""Peak resident memory of the gateway's workers during one cell.

On Linux the kernel keeps each process's peak RSS (`VmHWM` in /proc/<pid>/status) and lets
its owner reset it (writing 5 to /proc/<pid>/clear_refs), so the peak is exact, whatever
happened between two samples. Elsewhere, or if the reset is refused, a thread samples RSS
every 20 ms instead.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil

_SAMPLE_SECONDS = 0.02


def workers(root_pid: int) -> list[int]:
    """The processes that serve requests: uvicorn's workers, or the root when it has none."""
    children = psutil.Process(root_pid).children()
    return [int(child.pid) for child in children] or [root_pid]


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _kernel_peak_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


@contextlib.contextmanager
def peak_rss(pids: list[int]) -> Iterator[dict[int, float]]:
    """Within the block, track each process's peak RSS; the dict (MB by pid) is filled at exit."""
    peaks: dict[int, float] = {}
    exact = all(_reset_peak(pid) for pid in pids)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(_SAMPLE_SECONDS):
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    rss = psutil.Process(pid).memory_info().rss / 2**20
                    peaks[pid] = max(peaks.get(pid, 0.0), rss)

    sampler = None if exact else threading.Thread(target=sample, daemon=True)
    if sampler:
        sampler.start()
    try:
        yield peaks
    finally:
        stop.set()
        if sampler:
            sampler.join()
        for pid in pids:
            kernel = _kernel_peak_mb(pid) if exact else None
            if kernel is not None:
                peaks[pid] = kernel
