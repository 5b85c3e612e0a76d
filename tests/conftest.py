"""Fixtures for every layer: a real Redis, a fake upstream on loopback, the app, live servers."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient
from support import exposure
from support.clock import WindowSafeClock, wait_clear_of_day_edge
from support.config import ENV, base_config, merged, write_config
from support.fake_idp import FakeIdP, SigningKey, new_key
from support.fake_upstream import FakeUpstream
from support.fixtures import AppFactory
from support.redis_topologies import RedisClusterGroup, SentinelGroup
from support.servers import GatewayProcess, RedisServer

from gateway.app import create_app
from gateway.redaction import redact_keys
from gateway.settings.build import build_settings
from gateway.settings.config import parse_config
from gateway.store.base import KEY_PREFIX

pytest.register_assert_rewrite("support.requests")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `last` run after every other one (the secret scan reads their output)."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture(scope="session", autouse=True)
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep what the gateway shows the world this run: its in-process log lines and the
    error bodies and metrics callers got (see support/exposure.py)."""
    path = tmp_path_factory.getbasetemp() / "exposure" / "recorded.txt"
    exposure.start(path)
    handler = logging.FileHandler(path.with_name("in-process.log"), encoding="utf-8")
    logger = logging.getLogger("gateway")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield path.parent
    logger.removeHandler(handler)
    logger.setLevel(level)
    handler.close()


def _record_response(response: httpx.Response) -> None:
    if response.status_code >= 400 or response.url.path == "/metrics":
        response.read()
        # The label is the test's own request path, which may carry a key on purpose (one
        # typed where an id belongs): the scan is of what the gateway answered.
        path = redact_keys(response.url.path)
        exposure.record(f"{response.status_code} {path}", response.content)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: $REDIS_URL if set, else a throwaway redis-server for the session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """`redis_url`, with the gateway's keys removed before and after the test."""

    def wipe() -> None:
        with redis.Redis.from_url(redis_url) as client:
            keys = list(client.scan_iter(match=f"{KEY_PREFIX}:*", count=1000))
            if keys:
                client.delete(*keys)

    wipe()
    yield redis_url
    wipe()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterGroup]:
    """A 3-primary/3-replica Redis Cluster for the session (tests that kill nodes start
    their own)."""
    group = RedisClusterGroup(tmp_path_factory.mktemp("cluster"))
    try:
        yield group.start()
    finally:
        group.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A Sentinel group (primary, replica, three Sentinels) for the session."""
    group = SentinelGroup(tmp_path_factory.mktemp("sentinel"))
    try:
        yield group.start()
    finally:
        group.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A throwaway redis-server of the test's own, which it may stop and start again."""
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    """A fake OpenAI upstream on loopback, recording every request it gets."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="session")
def signing_keys() -> dict[str, SigningKey]:
    """IdP key pairs, generated once per session: RSA (one without `alg`), EC and Ed25519."""
    return {
        "rsa-1": new_key("rsa-1"),
        "rsa-2": new_key("rsa-2"),
        "rsa-3": new_key("rsa-3"),
        "rsa-noalg": new_key("rsa-noalg", jwk_alg=False),
        "ec-1": new_key("ec-1", "ES256"),
        "ed-1": new_key("ed-1", "EdDSA"),
    }


@pytest.fixture
def idp(signing_keys: dict[str, SigningKey]) -> Iterator[FakeIdP]:
    """A fake company IdP on loopback publishing rsa-1 and ec-1."""
    with FakeIdP([signing_keys["rsa-1"], signing_keys["ec-1"]]) as fake:
        yield fake


@pytest.fixture
def make_client(upstream: FakeUpstream) -> Iterator[AppFactory]:
    """Build the app in-process from config overrides and open a client on it."""
    clients: list[TestClient] = []

    def factory(
        overrides: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> TestClient:
        config = parse_config(merged(base_config(upstream.url), overrides or {}))
        settings = build_settings(config, {**ENV, **(env or {})})
        # Quota windows on a clock that reads just past a minute boundary as each app
        # starts: no window rolls over inside a test, whatever the time of day.
        app = create_app(settings, store_clock=WindowSafeClock())
        client = TestClient(app, base_url="http://gateway.test")
        client.event_hooks["response"].append(_record_response)
        clients.append(client.__enter__())
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: AppFactory) -> TestClient:
    """The app with the default test config, forwarding to the fake upstream."""
    return make_client()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start `gateway serve` processes from a config dict; all are stopped after the test."""
    started: list[GatewayProcess] = []
    wait_clear_of_day_edge()

    def start(
        config: dict[str, Any], env: dict[str, str] | None = None, *extra: str, workers: int = 1
    ) -> GatewayProcess:
        path = write_config(tmp_path / f"gateway-{len(started)}.yaml", config)
        proc = GatewayProcess(
            path,
            {**ENV, **(env or {})},
            workers=workers,
            log=tmp_path / f"gateway-{len(started)}.log",
        )
        started.append(proc)
        return proc.start(*extra)

    yield start
    for proc in started:
        proc.stop()
