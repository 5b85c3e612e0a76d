"""What one process can hold in flight: the least of its limit, its pool and its sockets."""

from __future__ import annotations

from gateway.server.capacity import FD_RESERVE, describe, in_flight, nofile_limits, raise_nofile
from gateway.settings.config import parse_config


def test_the_defaults_agree_and_the_open_file_limit_can_be_the_bound() -> None:
    """With the default config the in-flight limit and the pool agree; a low open-file
    limit (two sockets per request) becomes the bound, and the line says which to raise."""
    config = parse_config({})
    assert config.limits.max_concurrent_requests == config.upstream.max_connections
    assert in_flight(config, 1 << 20) == (4096, "limits.max_concurrent_requests")
    assert in_flight(config, 1024) == ((1024 - FD_RESERVE) // 2, "open files")
    line = describe(config, 1024)
    assert "480 requests in flight" in line and "raise the bound" in line


def test_a_smaller_pool_is_the_bound() -> None:
    """An upstream pool smaller than the in-flight limit is what a process can hold."""
    config = parse_config({"upstream": {"max_connections": 100}})
    assert in_flight(config, 1 << 20) == (100, "upstream.max_connections")


def test_serve_raises_the_soft_open_file_limit_to_the_hard_one() -> None:
    """`raise_nofile` leaves the soft limit at what `nofile_limits` said it would."""
    planned = nofile_limits()
    raised = raise_nofile()
    assert planned is not None and raised is not None
    assert raised.now == planned.now >= raised.was
    assert nofile_limits() == (raised.now, raised.now)
