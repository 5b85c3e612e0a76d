"""docker-compose.sentinel.yml: the quota state on a Sentinel-managed primary, read as data."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import yaml
from support.deploy_files import (
    COMPOSE_FILE,
    CONFIG,
    DUMMY_SECRETS,
    GATEWAY_CONFIG,
    GATEWAY_SERVICES,
    ROOT,
    SENTINEL_OVERRIDE,
)

from gateway.store.urls import parse_url

SENTINEL_CONF = CONFIG / "sentinel.conf"


def _services(path: Any) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text(encoding="utf-8"))["services"])


def _monitor() -> list[str]:
    """The `sentinel monitor <service> <host> <port> <quorum>` line of the Sentinels' config."""
    lines = SENTINEL_CONF.read_text(encoding="utf-8").splitlines()
    return next(line.split()[2:] for line in lines if line.startswith("sentinel monitor "))


def _state_url() -> str:
    return str(_services(SENTINEL_OVERRIDE)[GATEWAY_SERVICES[0]]["environment"]["REDIS_URL"])


def test_the_gateways_ask_every_sentinel_for_the_service_they_monitor() -> None:
    """Both replicas reach the state through all three Sentinels, by the service name the
    Sentinels monitor, whose first primary is the base file's redis-state."""
    override = _services(SENTINEL_OVERRIDE)
    sentinels = sorted(name for name in override if name.startswith("sentinel-"))
    target = parse_url(_state_url())
    assert target.topology == "sentinel"
    assert sorted(host for host, _ in target.hosts) == sentinels and len(sentinels) == 3
    service, host, port, quorum = _monitor()
    assert target.names == (service,)
    assert (host, port, int(quorum)) == ("redis-state", "6379", 2)
    assert all(
        override[name]["environment"]["REDIS_URL"] == _state_url() for name in GATEWAY_SERVICES
    )


def test_the_replica_keeps_the_primarys_persistence_and_never_evicts() -> None:
    """The replica that may become primary has redis-state's append-only persistence and
    noeviction, and follows redis-state."""
    primary = _services(COMPOSE_FILE)["redis-state"]["command"]
    replica = _services(SENTINEL_OVERRIDE)["redis-state-replica"]["command"]
    assert replica[: len(primary)] == primary
    assert replica[len(primary) :] == ["--replicaof", "redis-state", "6379"]


def test_the_sentinel_url_passes_config_check() -> None:
    """`gateway config check` accepts the compose config with the override's REDIS_URL."""
    env = {**os.environ, **DUMMY_SECRETS, "REDIS_URL": _state_url()}
    command = [sys.executable, "-m", "gateway", "config", "check", "--config", str(GATEWAY_CONFIG)]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
