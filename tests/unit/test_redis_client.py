"""Which Redis client a URL opens, and that stores naming one URL share one client."""

from __future__ import annotations

import pytest

from gateway.store.connect import Connections, connect


def test_one_client_per_distinct_url() -> None:
    """The quota store and the cache naming the same URL get the same client (one pool)."""
    connections = Connections()
    first = connections.client("redis://127.0.0.1:1/0")
    assert connections.client("redis://127.0.0.1:1/0") is first
    assert connections.client("redis://127.0.0.1:1/1") is not first


def test_an_unknown_scheme_is_refused_naming_the_known_ones() -> None:
    """A URL of a scheme no opener handles is refused, listing the schemes that work."""
    with pytest.raises(ValueError, match=r"not a Redis URL .*redis\+cluster://"):
        connect("http://127.0.0.1:6379")
