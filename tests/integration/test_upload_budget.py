"""limits.upload_buffer_mb: uploads beyond the per-process budget wait, and time out as a 503."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from support.config import auth
from support.fake_upstream import FakeUpstream, Received, Reply, images_response
from support.pngs import png_of_about
from support.requests import PATH, assert_openai_error, post_variation

BIG = png_of_about(2_000_000)  # two fit in the 5 MB budget below, three do not


class _Gauge:
    """Counts the requests the upstream is working on, and the most at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.now, self.most = seconds, 0, 0
        self._lock = threading.Lock()

    def __call__(self, received: Received) -> Reply:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.seconds)
        with self._lock:
            self.now -= 1
        return Reply(body=images_response(received))


def test_uploads_past_the_budget_wait_their_turn_and_all_succeed(
    make_client, upstream: FakeUpstream
) -> None:
    """With room for two uploads, three sent at once all succeed, never more than two held."""
    client = make_client({"limits": {"upload_buffer_mb": 5}})
    upstream.script = gauge = _Gauge(0.3)
    with ThreadPoolExecutor(3) as pool:
        statuses = list(pool.map(lambda _: post_variation(client, image=BIG).status_code, range(3)))
    assert statuses == [200, 200, 200]
    assert gauge.most == 2


def test_no_room_within_the_body_timeout_is_a_retryable_503(
    make_client, upstream: FakeUpstream
) -> None:
    """A request that cannot get memory for its upload in time is refused: 503 overloaded."""
    client = make_client({"limits": {"upload_buffer_mb": 5, "body_timeout_seconds": 0.3}})
    upstream.script = _Gauge(1.5)

    def streamed():  # no Content-Length: the gateway must make room for the largest upload
        yield b'--b\r\nContent-Disposition: form-data; name="n"\r\n\r\n1\r\n--b--\r\n'

    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(post_variation, client, image=BIG)
        time.sleep(0.2)  # the first upload is held while the upstream works
        response = client.post(
            PATH,
            content=streamed(),
            headers={**auth("alice"), "content-type": "multipart/form-data; boundary=b"},
        )
        assert holder.result().status_code == 200
    assert_openai_error(response, 503, "server_overloaded", type_="server_error")
    assert response.headers["retry-after"] == "1"
