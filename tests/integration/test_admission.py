"""Admission through the app: who is refused before the upload is read, and how."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from support.fake_upstream import FakeUpstream, Received, Reply, images_response
from support.fixtures import AppFactory
from support.requests import assert_openai_error, post_variation

WAIT = 10.0  # seconds a test waits for the upstream to be reached, only when it fails


def test_a_refusal_for_a_bad_key_closes_the_connection(
    make_client: AppFactory, upstream: FakeUpstream
) -> None:
    """A caller without a valid key is answered 401 with `Connection: close`: the server
    stops reading whatever body it announced."""
    client = make_client()
    response = post_variation(client, headers={"authorization": "Bearer wrong"})
    assert_openai_error(response, 401, "invalid_api_key")
    assert response.headers["connection"] == "close"
    assert upstream.received == []


def test_a_caller_refused_for_quota_is_refused_at_the_door_while_still_out_of_room(
    make_client: AppFactory, upstream: FakeUpstream
) -> None:
    """After a quota refusal, the caller's next request is refused before its body is read
    (the connection closed), with the same 429; another caller is not affected."""
    rules = {"default": [{"unit": "requests", "limit": 1, "window": "day"}]}
    client = make_client({"quotas": rules})
    assert post_variation(client).status_code == 200
    read_first = post_variation(client)
    assert_openai_error(read_first, 429, "insufficient_quota", type_="insufficient_quota")
    assert "connection" not in read_first.headers  # its body was read: keep-alive
    at_the_door = post_variation(client)
    assert_openai_error(at_the_door, 429, "insufficient_quota", type_="insufficient_quota")
    assert at_the_door.headers["connection"] == "close"
    assert at_the_door.headers["x-should-retry"] == "false"
    assert post_variation(client, user="carol").status_code == 200
    assert len(upstream.received) == 2


def test_past_the_in_flight_limit_a_request_is_refused_unread_with_a_retryable_503(
    make_client: AppFactory, upstream: FakeUpstream
) -> None:
    """With one request in flight allowed and one waiting on the upstream, the next is
    refused at once: 503 server_overloaded, Retry-After, connection closed."""
    client = make_client({"limits": {"max_concurrent_requests": 1}})
    reached, release = threading.Event(), threading.Event()

    def hold(received: Received) -> Reply:
        reached.set()
        release.wait(WAIT)
        return Reply(body=images_response(received))

    upstream.script = hold
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post_variation, client)
        assert reached.wait(WAIT)
        refused = post_variation(client)
        release.set()
        assert first.result().status_code == 200
    assert_openai_error(refused, 503, "server_overloaded", type_="server_error")
    assert refused.headers["retry-after"] == "1" and refused.headers["connection"] == "close"
    assert len(upstream.received) == 1
