"""Fixtures of the fault tests: a Redis whose data survives a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
