"""After the whole run: no secret in anything the gateway showed the world.

Runs last (marker `last`). It reads every live gateway's log (stdout and stderr) left in
the run's temporary directory, the in-process app's log lines, and the error bodies and
/metrics pages callers received (support/exposure.py), and looks for the configured keys
and secrets, the upstream fault canaries, and anything shaped like a gateway key, an
OpenAI key, a JWT, a signed URL or a hosted-file token.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from support.exposure import secrets_in
from support.fake_upstream import FakeUpstream, Reply
from support.requests import post_variation
from support.upstream_faults import CANARIES, error_body

pytestmark = pytest.mark.last


def test_no_secret_in_logs_metrics_or_error_bodies_of_the_whole_run(
    client: TestClient,
    upstream: FakeUpstream,
    exposed: Path,
    tmp_path_factory: pytest.TempPathFactory,
    measured: Callable[[str], None],
) -> None:
    """Every log line, error body and metrics page of the run is free of secrets."""
    upstream.reply(Reply(400, error_body(type="invalid_request_error", code="bad")))
    assert post_variation(client).status_code == 400  # a canary-laden answer of our own
    assert post_variation(client, headers={"Authorization": "Bearer gwk_wrong_key_0123456789"})
    assert client.get("/metrics").status_code == 200
    sources = [*tmp_path_factory.getbasetemp().rglob("gateway-*.log"), *exposed.iterdir()]
    scanned = 0
    leaks: dict[str, list[str]] = {}
    for source in sources:
        text = source.read_text(encoding="utf-8", errors="replace")
        scanned += len(text)
        found = secrets_in(text, extra=CANARIES)
        if found:
            leaks[str(source)] = found[:5]
    measured(f"secret scan: {len(sources)} files, {scanned / 1e6:.1f} MB of logs, bodies, metrics")
    assert scanned > 0 and not leaks, leaks


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("user alice sent gwk_alice_test_key_aaaaaaaaaaaaaaaa", True),
        ('{"message": "key sk-proj-abcdefgh1234"}', True),
        ("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln", True),
        ("https://blob.example/a.png?se=2099&sig=AbC%2Bdef", True),
        ("GET /files/3q2-7wEAAAAAAAAAAAAAAAAAAAAAAAA.png", True),
        ("demo key: gwk_0123456789abcdefghijklmnop", False),
        ("demo admin key: gwk_0123456789abcdefghijklmnop", False),
        ('{"path": "/files/<token>", "error": "invalid_api_key"}', False),
    ],
)
def test_the_scan_finds_what_it_looks_for(text: str, found: bool) -> None:
    """The scan is not blind: each kind of secret is found, the allowed lines are not."""
    assert bool(secrets_in(text)) is found
