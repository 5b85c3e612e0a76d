"""The resident memory of a process the tests started, sampled while a test loads it."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import psutil

MiB = 1024 * 1024


class PeakRss:
    """`with PeakRss(pid) as rss:` samples the process's RSS every `every` seconds;
    `rss.base`, `rss.peak` and `rss.growth` are in bytes."""

    def __init__(self, pid: int, every: float = 0.01) -> None:
        self._process = psutil.Process(pid)
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.base = self.peak = self._process.memory_info().rss

    @property
    def growth(self) -> int:
        return self.peak - self.base

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except psutil.Error:
                return  # the process is gone
            time.sleep(self._every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
