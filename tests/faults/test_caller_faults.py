"""Callers that hang up, trickle, stall or never stop sending, on raw sockets: each is
settled correctly, cut off at its deadline or cap, and costs nothing it did not receive."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from support.callers import multipart, open_raw, post, raw_head, read_answer, status_of
from support.config import KEYS
from support.fake_upstream import FakeUpstream, Reply, images_response
from support.ledger import Seen, Tally, assert_balanced, ledger_config, seen_of
from support.pngs import make_png
from support.servers import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
PNG = make_png(48)
BODY, CONTENT_TYPE = multipart(PNG, n="2", size="256x256")
DEADLINE = 1.0  # limits.body_timeout_seconds in these tests


def chunked(data: bytes) -> bytes:
    """`data` as one chunk of a chunked body (not terminated)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.fixture
def gateway(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> GatewayProcess:
    """A live gateway with quota rules on Redis and a 1 s body deadline."""
    config = ledger_config(upstream.url, limits={"body_timeout_seconds": DEADLINE})
    return start_gateway(config, {"REDIS_URL": clean_redis})


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_hanging_up_mid_upload_charges_nothing_and_sends_nothing_upstream(
    gateway: GatewayProcess, upstream: FakeUpstream, clean_redis: str, framing: str
) -> None:
    """Callers that close the connection halfway through their upload are never charged,
    never forwarded, and leave the gateway serving the next caller."""
    half = BODY[: len(BODY) // 2]
    for _ in range(5):
        if framing == "chunked":
            sock = open_raw(
                gateway.port, raw_head(gateway.port, length=None, content_type=CONTENT_TYPE)
            )
            sock.sendall(chunked(half))
        else:
            head = raw_head(gateway.port, length=len(BODY), content_type=CONTENT_TYPE)
            sock = open_raw(gateway.port, head + half)
        time.sleep(0.05)
        sock.close()
    served = gateway.post_variation(PNG, size="256x256")
    assert served.status_code == 200
    assert len(upstream.received) == 1
    time.sleep(0.2)  # the last hang-up is logged
    assert gateway.output().count('"outcome":"client_gone"') == 5
    assert_balanced(clean_redis, [], upstream.received)


def test_hanging_up_while_upstream_works_is_charged_like_waiting(
    gateway: GatewayProcess, upstream: FakeUpstream, clean_redis: str
) -> None:
    """8 callers hang up while upstream works on their requests and 8 wait: the calls of
    the 8 who left are not cancelled, and every one of the 16 is charged what the upstream
    made."""
    upstream.script = lambda r: Reply(body=images_response(r), delay=1.5)
    tally = Tally()

    async def wait_for_answers() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            calls = (post(client, gateway.url, tally, PNG, user="bob", n="2") for _ in range(8))
            await asyncio.gather(*calls)

    waiting = threading.Thread(target=asyncio.run, args=(wait_for_answers(),))
    waiting.start()
    head = raw_head(gateway.port, length=len(BODY), content_type=CONTENT_TYPE, user="carol")
    leaving = [open_raw(gateway.port, head + BODY) for _ in range(8)]
    deadline = time.monotonic() + 10
    while len(upstream.received) < 16 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(upstream.received) == 16, "not every request reached upstream"
    for sock in leaving:
        sock.close()
    tally.seen += [Seen("carol", "256x256", 0) for _ in leaving]
    waiting.join()
    assert tally.statuses()[200] == 8
    assert_balanced(clean_redis, tally.seen, upstream.received)


def _trickle(sock: socket.socket, data: bytes, every: float) -> None:
    try:
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])
            time.sleep(every)
    except OSError:
        pass  # the gateway gave up on us, as it should


def _slow_loris(port: int, variant: str) -> bytes:
    """One slow caller: its raw answer."""
    if variant == "trickle":
        sock = open_raw(port, raw_head(port, length=len(BODY), content_type=CONTENT_TYPE))
        sender = threading.Thread(target=_trickle, args=(sock, BODY, 0.05), daemon=True)
    elif variant == "trickle-chunked":
        sock = open_raw(port, raw_head(port, length=None, content_type=CONTENT_TYPE))
        sender = threading.Thread(target=_trickle, args=(sock, chunked(BODY), 0.05), daemon=True)
    elif variant == "stall-after-head":
        sock = open_raw(port, raw_head(port, length=len(BODY), content_type=CONTENT_TYPE))
        sender = threading.Thread(target=lambda: None)
    elif variant == "stall-mid-image":
        head = raw_head(port, length=len(BODY), content_type=CONTENT_TYPE)
        sock = open_raw(port, head + BODY[: len(BODY) - 100])
        sender = threading.Thread(target=lambda: None)
    else:  # a bad key and a trickling body: refused once the body is drained or too late
        head = raw_head(port, length=len(BODY), content_type=CONTENT_TYPE)
        sock = open_raw(port, head.replace(KEYS["alice"].encode(), b"gwk_wrong"))
        sender = threading.Thread(target=_trickle, args=(sock, BODY, 0.05), daemon=True)
    sender.start()
    answer = read_answer(sock)
    sock.close()
    return answer


VARIANTS = ("trickle", "trickle-chunked", "stall-after-head", "stall-mid-image", "bad-key")


def test_slow_loris_bodies_are_cut_off_at_the_deadline_while_others_are_served(
    gateway: GatewayProcess, upstream: FakeUpstream, clean_redis: str
) -> None:
    """25 slow callers (trickling, stalled, chunked, with a bad key) are each answered by the
    body deadline (400 request_timeout; 401; or 503, unread, past the caller's cap of
    uploads at once), cost nothing, reach no upstream, and another caller is served
    meanwhile."""
    answers: dict[int, bytes] = {}

    def run(index: int) -> None:
        answers[index] = _slow_loris(gateway.port, VARIANTS[index % len(VARIANTS)])

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(25)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    # Another caller: alice's own further uploads wait behind her cap of uploads at once.
    served = gateway.post_variation(PNG, user="carol", size="256x256")
    for thread in threads:
        thread.join(timeout=20)
    elapsed = time.monotonic() - started
    assert served.status_code == 200
    for index, answer in answers.items():
        if VARIANTS[index % len(VARIANTS)] == "bad-key":
            assert status_of(answer) == 401, answer[:300]
        elif status_of(answer) == 503:  # past alice's cap of uploads at once: never read
            assert b'"server_overloaded"' in answer and b"connection: close" in answer
        else:
            assert status_of(answer) == 400, answer[:300]
            assert b'"request_timeout"' in answer and b"x-should-retry: false" in answer
    assert len(answers) == 25
    assert elapsed < 10 * DEADLINE  # cut off at the deadline, not when the caller finished
    assert len(upstream.received) == 1
    assert_balanced(clean_redis, [], upstream.received)


def test_endless_chunked_body_is_cut_off_at_the_cap(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    """A chunked upload that never ends is answered 413 and closed near the cap, not buffered."""
    sock = open_raw(gateway.port, raw_head(gateway.port, length=None, content_type=CONTENT_TYPE))
    block = chunked(b"\0" * 65536)
    sent = 0
    try:
        while sent < 50 * 1024 * 1024:
            sock.sendall(block)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = read_answer(sock)
    sock.close()
    assert status_of(answer) == 413 and b"request_too_large" in answer
    assert sent < 16 * 1024 * 1024, f"the gateway read {sent} bytes before cutting off"
    assert upstream.received == []


@pytest.fixture
def cached_gateway(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> GatewayProcess:
    """A live gateway with quota rules and the cache on Redis."""
    config = ledger_config(upstream.url, cache={"enabled": True})
    return start_gateway(config, {"REDIS_URL": clean_redis})


def _wait_for_calls(upstream: FakeUpstream, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(upstream.received) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(upstream.received) == count, "the request never reached upstream"


def test_hanging_up_after_dispatch_is_charged_cached_and_the_retry_is_a_hit(
    cached_gateway: GatewayProcess, upstream: FakeUpstream, clean_redis: str
) -> None:
    """A caller who hangs up once its request is upstream does not cancel the call: it is
    charged as delivered and cached, and the caller's retry is a hit (no second call)."""
    upstream.script = lambda r: Reply(body=images_response(r), delay=1.0)
    sock = open_raw(cached_gateway.port, raw_head(cached_gateway.port, length=len(BODY),
                                                  content_type=CONTENT_TYPE) + BODY)  # fmt: skip
    _wait_for_calls(upstream, 1)
    sock.close()
    time.sleep(1.5)  # the call finishes in the background
    retry = seen_of(cached_gateway.post_variation(PNG, n="2", size="256x256"), size="256x256")
    assert (retry.status, retry.cache, retry.images) == (200, "HIT", 2)
    assert len(upstream.received) == 1
    books = assert_balanced(clean_redis, [retry], upstream.received)
    assert books[("user", "alice", "images")] == 2 and books[("user", "alice", "requests")] == 2


def test_hanging_up_while_waiting_on_a_coalesced_call_refunds_everything(
    cached_gateway: GatewayProcess, upstream: FakeUpstream, clean_redis: str
) -> None:
    """A caller waiting on another's identical call (its own never sent) who hangs up pays
    nothing; the leader pays its call."""
    upstream.script = lambda r: Reply(body=images_response(r), delay=1.5)
    leader: list[Seen] = []
    thread = threading.Thread(
        target=lambda: leader.append(
            seen_of(cached_gateway.post_variation(PNG, n="2", size="256x256"), size="256x256")
        )
    )
    thread.start()
    _wait_for_calls(upstream, 1)
    head = raw_head(cached_gateway.port, length=len(BODY), content_type=CONTENT_TYPE, user="bob")
    follower = open_raw(cached_gateway.port, head + BODY)
    time.sleep(0.3)  # bob is charged and waiting on alice's call
    follower.close()
    thread.join()
    assert leader[0].status == 200 and len(upstream.received) == 1
    books = assert_balanced(clean_redis, leader, upstream.received)
    assert not any(subject == "bob" for _, subject, _ in books)
