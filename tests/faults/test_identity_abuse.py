"""Callers trying to be someone else, go somewhere else, or smuggle something upstream.

A caller cannot choose its upstream `user`, reach another upstream path, read another
user's quota, use admin routes, or get any header of its own (CR/LF tricks, a second
Authorization, Transfer-Encoding games) to the upstream. Keys are held only as digests.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient
from support.callers import multipart, status_of
from support.config import KEYS, USER_SECRET, auth, base_config
from support.fake_upstream import FakeUpstream
from support.pngs import make_png
from support.requests import PATH, assert_openai_error, post_variation
from support.servers import GatewayProcess

from gateway.auth.authenticator import pseudonym
from gateway.auth.keys import key_digest

PNG = make_png(16)
ALICE = pseudonym(USER_SECRET, "alice")
# What the upstream may see: its own HTTP framing, and what the gateway sets.
UPSTREAM_HEADERS = {
    "host",
    "accept",
    "accept-encoding",
    "connection",
    "user-agent",
    "content-length",
    "content-type",
    "authorization",
}


@pytest.mark.parametrize(
    "user",
    ["bob", "", pseudonym(USER_SECRET, "bob"), "alice\r\nX-Injected: 1", "x" * 1000],
    ids=["other-user", "empty", "others-pseudonym", "crlf", "long"],
)
def test_the_caller_cannot_choose_its_upstream_user(
    client: TestClient, upstream: FakeUpstream, user: str
) -> None:
    """Whatever `user` the caller sends (even another user's pseudonym), upstream gets the
    caller's own pseudonym."""
    assert post_variation(client, fields={"user": user}).status_code == 200
    [seen] = upstream.received
    assert seen.fields["user"] == ALICE
    assert "x-injected" not in seen.headers


def test_no_header_of_the_callers_reaches_upstream(
    client: TestClient, upstream: FakeUpstream
) -> None:
    """Cookies, forwarding headers, OpenAI headers, other credentials: none goes upstream;
    its headers are the HTTP framing and the company's Authorization only."""
    canaries = {
        "Cookie": "session=canary-1",
        "X-Forwarded-For": "10.9.9.9",
        "X-Forwarded-Host": "canary-2.example",
        "X-Real-IP": "10.9.9.8",
        "Forwarded": "for=canary-3",
        "OpenAI-Organization": "org-canary4",
        "OpenAI-Project": "proj_canary5",
        "OpenAI-Beta": "canary-6",
        "X-Stainless-Lang": "canary-7",
        "Proxy-Authorization": "Basic Y2FuYXJ5Ojg=",
        "X-Api-Key": "canary-9",
        "User-Agent": "canary-10",
        "Accept-Encoding": "canary-11",
        "Idempotency-Key": "canary-12",
    }
    assert post_variation(client, headers=canaries).status_code == 200
    [seen] = upstream.received
    assert set(seen.headers) <= UPSTREAM_HEADERS, set(seen.headers) - UPSTREAM_HEADERS
    values = " ".join(seen.headers.values())
    assert "canary" not in values.lower() and "10.9.9" not in values
    assert seen.headers["authorization"] != auth()["Authorization"]


def test_a_caller_reads_only_its_own_quota(make_client: Any) -> None:
    """Query parameters and identity headers do not change whose quota /v1/quota shows."""
    client = make_client({"quotas": {"default": [{"unit": "images", "limit": 5, "window": "day"}]}})
    for query, headers in [
        ("?user=bob", {}),
        ("?subject=bob&scope=user", {}),
        ("", {"X-Forwarded-User": "bob", "X-User": "bob"}),
    ]:
        response = client.get("/v1/quota" + query, headers={**auth("alice"), **headers})
        body = response.json()
        assert (body["user"], {rule["subject"] for rule in body["rules"]}) == ("alice", {"alice"})
    assert_openai_error(client.get("/v1/quota/bob", headers=auth()), 404, "not_found")


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/admin/quotas", 403, "permission_denied"),
        ("/admin/quotas?role=admin", 403, "permission_denied"),
        ("/admin/quotas/", 404, "not_found"),
        ("/ADMIN/quotas", 404, "not_found"),
        ("/admin//quotas", 404, "not_found"),
        ("/admin/quotas%2F", 404, "not_found"),
    ],
)
def test_admin_routes_need_the_admin_role_by_any_path(
    client: TestClient, path: str, status: int, code: str
) -> None:
    """A user's key never reads /admin/quotas, whatever spelling or header it tries."""
    headers = {**auth("alice"), "X-Forwarded-Groups": "admin", "X-Role": "admin"}
    assert_openai_error(client.get(path, headers=headers), status, code)


# --- raw sockets against a live gateway ---------------------------------------------------

BODY, CONTENT_TYPE = multipart(PNG)
HIDDEN = (
    b"GET /admin/quotas HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
    + KEYS["alice"].encode()
    + b"\r\n\r\n"
)


def _exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a fresh connection; everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


def _head(target: bytes, *lines: bytes) -> bytes:
    fixed = [b"Host: x", b"Authorization: Bearer " + KEYS["alice"].encode()]
    fixed.append(b"Content-Type: " + CONTENT_TYPE.encode())
    return b"POST " + target + b" HTTP/1.1\r\n" + b"\r\n".join([*fixed, *lines]) + b"\r\n\r\n"


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


SMUGGLING = {
    # Content-Length and Transfer-Encoding both: who decides where the body ends?
    "cl-te": _head(PATH.encode(), b"Content-Length: 6", b"Transfer-Encoding: chunked")
    + b"0\r\n\r\n"
    + HIDDEN,
    "te-cl": _head(PATH.encode(), b"Transfer-Encoding: chunked", b"Content-Length: 4")
    + _chunked(HIDDEN),
    "two-lengths": _head(PATH.encode(), b"Content-Length: 0", b"Content-Length: 100") + HIDDEN,
    "te-xchunked": _head(PATH.encode(), b"Transfer-Encoding: xchunked") + HIDDEN,
    "te-list": _head(PATH.encode(), b"Transfer-Encoding: chunked, identity") + HIDDEN,
    "te-folded": _head(PATH.encode(), b"Transfer-Encoding:\r\n chunked") + _chunked(HIDDEN),
    "te-twice": _head(PATH.encode(), b"Transfer-Encoding: chunked", b"Transfer-Encoding: x")
    + _chunked(HIDDEN),
    "bare-cr": _head(PATH.encode(), b"X-A: a\rAuthorization: Bearer x", b"Content-Length: 0"),
    "bare-lf": _head(PATH.encode(), b"X-A: a\nTransfer-Encoding: chunked", b"Content-Length: 0")
    + HIDDEN,
    "nul": _head(PATH.encode(), b"X-A: a\0b", b"Content-Length: 0"),
}


def test_smuggling_attempts_never_reach_upstream_nor_hide_a_second_request(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream
) -> None:
    """Every request-smuggling shape is refused at the socket (400, connection closed) or
    answered as one request: the hidden admin request is never served, nothing is
    forwarded, and the gateway keeps serving."""
    gateway = start_gateway(base_config(upstream.url))
    answers = {name: _exchange(gateway.port, data) for name, data in SMUGGLING.items()}
    for name, answer in answers.items():
        assert status_of(answer) in (400, 401), (name, answer[:200])
        assert answer.count(b"HTTP/1.1 ") == 1, (name, answer[:400])
        assert b"principals" not in answer, name
    assert upstream.received == []
    assert '"path":"/admin/quotas"' not in gateway.output()
    assert gateway.post_variation(PNG).status_code == 200


TARGETS = (
    b"/v1/images/edits",
    b"/v1/images/variations/../edits",
    b"/v1/images/variations/%2e%2e/edits",
    b"/v1/images/variations%2F..%2Fedits",
    b"/v1/images/./variations",
    b"//v1/images/variations",
    b"/V1/images/variations",
    b"/v1/images/variations/",
    b"/v1/images/variations;edits",
    b"/v1/chat/completions",
    b"http://evil.example/v1/images/edits",
    b"http://evil.example/v1/images/variations",
    b"/v1/images/variations?path=../edits&url=http://evil.example/",
)


def test_no_request_target_reaches_another_upstream_path(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream
) -> None:
    """Path tricks and absolute URLs get a 404 (or the variations endpoint itself, or the
    edits endpoint, which refuses this body without a prompt): the upstream only ever sees
    POST /v1/images/variations on its configured host."""
    gateway = start_gateway(base_config(upstream.url))
    served = 0
    for target in TARGETS:
        head = _head(target, b"Content-Length: %d" % len(BODY), b"Connection: close")
        status = status_of(_exchange(gateway.port, head + BODY))
        edits = target.endswith(b"/v1/images/edits")
        assert status in ((400,) if edits else (200, 404)), target
        served += status == 200
    assert served == 2  # the absolute URL of the variations path, and the query string
    assert {(r.method, r.path) for r in upstream.received} == {("POST", "/v1/images/variations")}
    assert len(upstream.received) == served


def test_keys_are_held_only_as_digests(client: TestClient, tmp_path: Any) -> None:
    """No configured key appears in the config, in the running app's state or its repr:
    only their SHA-256 digests do (and a presented key is hashed before any lookup)."""
    from support.config import write_config

    config_text = write_config(tmp_path / "c.yaml", base_config("sandbox")).read_text()
    services = client.app.state.services  # type: ignore[attr-defined]
    held = repr(_walk(services)) + repr(services) + config_text
    for key in KEYS.values():
        assert key not in held
        assert key_digest(key) in held  # the walk does reach the key table
    principals = yaml.safe_load(config_text)["principals"]
    assert all(set(p) == {"user", "team", "role", "key_sha256"} for p in principals)


def _walk(node: Any, depth: int = 0, seen: set[int] | None = None) -> list[Any]:
    """Every attribute value reachable from `node`, a few levels deep."""
    seen = set() if seen is None else seen
    if depth > 6 or id(node) in seen:
        return []
    seen.add(id(node))
    found = [node]
    children: list[Any] = []
    if isinstance(node, dict):
        children = [*node.keys(), *node.values()]
    elif isinstance(node, list | tuple | set | frozenset):
        children = list(node)
    elif hasattr(node, "__dict__"):
        children = list(vars(node).values())
    for child in children:
        found += _walk(child, depth + 1, seen)
    return found
