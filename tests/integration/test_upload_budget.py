"""limits.upload_buffer_mb: an upload counts against the budget only until it is sent."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from support.fake_upstream import FakeUpstream, Received, Reply, images_response
from support.fixtures import AppFactory
from support.pngs import png_of_about
from support.requests import post_variation

BIG = png_of_about(2_000_000)  # two fit in the 5 MB budget below, three do not


class _Barrier:
    """The upstream answers nobody until `parties` requests are waiting on it at once (an
    error for all if they are not there within `seconds`: the test fails, it never hangs)."""

    def __init__(self, parties: int, seconds: float = 10.0) -> None:
        self._barrier = threading.Barrier(parties, timeout=seconds)

    def __call__(self, received: Received) -> Reply:
        try:
            self._barrier.wait()
        except threading.BrokenBarrierError:
            return Reply(status=500, body={"error": {"message": "not all there"}})
        return Reply(body=images_response(received))


def test_an_uploads_memory_is_given_back_once_the_upstream_has_it(
    make_client: AppFactory, upstream: FakeUpstream
) -> None:
    """With room for two 2 MB uploads, three sent at once are all at the upstream together:
    an upload counts against the budget until it is sent, not until it is answered."""
    client = make_client({"limits": {"upload_buffer_mb": 5}})
    upstream.script = _Barrier(3)
    with ThreadPoolExecutor(3) as pool:
        statuses = list(pool.map(lambda _: post_variation(client, image=BIG).status_code, range(3)))
    assert statuses == [200, 200, 200]
