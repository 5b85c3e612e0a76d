"""Fixtures of the fault tests: a Redis whose data survives a restart, and figures for the
run's summary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.servers import RedisServer


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A throwaway redis-server with an fsync-always append-only file, as the deployment's
    state Redis: tests stop and start it, and its counters survive."""
    workdir = tmp_path / "redis-state"
    workdir.mkdir()
    server = RedisServer(workdir, persistent=True).start()
    try:
        yield server
    finally:
        server.stop()


_MEASURED: list[str] = []


@pytest.fixture
def measured() -> Callable[[str], None]:
    """Report a figure (a peak RSS, a count of cases) in the run's terminal summary."""
    return _MEASURED.append


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The figures the fault tests measured, for the issue's table."""
    if _MEASURED:
        terminalreporter.section("fault measurements")
        for line in _MEASURED:
            terminalreporter.line(line)
