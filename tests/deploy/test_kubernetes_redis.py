"""The sentinel overlay's Redis (deploy/kubernetes/overlays/sentinel): its start scripts run
on real redis-server processes and Sentinels on loopback, and its files read as data
against compose's Sentinel deployment and the gateways' REDIS_URL.

The scripts take every address as host:port from their environment, so the pods' names
in the cluster and loopback ports here go through the same code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from support.deploy_files import COMPOSE_FILE, CONFIG
from support.k8s_files import OVERLAYS
from support.redis_topologies import SERVICE, SentinelGroup
from support.servers import STARTUP_SECONDS, RedisServer, free_port, redis_server_binary

from gateway.store.urls import parse_url

SENTINEL_OVERLAY = OVERLAYS["sentinel"]


def _docs(name: str) -> list[dict[str, Any]]:
    text = (SENTINEL_OVERLAY / name).read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _workload(name: str, kind: str) -> dict[str, Any]:
    (found,) = [d for d in _docs(f"{name}.yaml") if d["kind"] == kind]
    return found


def _pod_env(name: str) -> dict[str, str]:
    (container,) = _workload(name, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def _members(name: str, port: int) -> list[str]:
    """The host:port of every pod of a StatefulSet, by its stable name."""
    replicas = _workload(name, "StatefulSet")["spec"]["replicas"]
    return [f"{name}-{i}.{name}:{port}" for i in range(replicas)]


# --- the overlay's files, as data -------------------------------------------------------


def _sentinel_settings(path: Path) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


def test_the_sentinels_are_configured_as_composes_but_for_the_primarys_name() -> None:
    """sentinel.conf has compose's settings line for line; only the monitored host is the
    first redis-state pod's stable name instead of compose's service name."""
    ours, compose = (
        _sentinel_settings(path)
        for path in (SENTINEL_OVERLAY / "sentinel.conf", CONFIG / "sentinel.conf")
    )
    assert len(ours) == len(compose)
    for mine, theirs in zip(ours, compose, strict=True):
        if mine[:2] == ["sentinel", "monitor"]:
            assert mine[:3] + mine[4:] == theirs[:3] + theirs[4:]
            assert f"{mine[3]}:{mine[4]}" == _pod_env("redis-state")["FIRST"]
        else:
            assert mine == theirs


def test_the_gateways_ask_every_sentinel_pod_for_the_monitored_service() -> None:
    """REDIS_URL lists every Sentinel pod by its stable name and asks for the service the
    Sentinels monitor; both start scripts know the same Sentinels and the same service."""
    (patch,) = _docs("gateway-redis.yaml")
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    env = {entry["name"]: entry["value"] for entry in container["env"]}
    target = parse_url(env["REDIS_URL"])
    sentinels = _members("redis-sentinel", 26379)
    assert target.topology == "sentinel"
    assert [f"{host}:{port}" for host, port in target.hosts] == sentinels
    monitored = next(
        s for s in _sentinel_settings(SENTINEL_OVERLAY / "sentinel.conf") if s[1:2] == ["monitor"]
    )
    assert target.names == (monitored[2],)
    for name in ("redis-state", "redis-sentinel"):
        assert _pod_env(name)["SENTINELS"].split() == sentinels
        assert _pod_env(name)["SENTINEL_SERVICE"] == monitored[2]
    assert _pod_env("redis-sentinel")["REDIS_HOSTS"].split() == _members("redis-state", 6379)
    assert parse_url(env["CACHE_REDIS_URL"]).hosts == (("redis-cache", 6379),)


def test_the_state_redis_keeps_composes_persistence() -> None:
    """redis-state.sh starts Redis with every flag of compose's redis-state command."""
    script = (SENTINEL_OVERLAY / "redis-state.sh").read_text(encoding="utf-8")
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    command = compose["services"]["redis-state"]["command"][1:]
    for flag, value in zip(command[::2], command[1::2], strict=True):
        assert f"{flag} {value}" in script, flag


# --- the start scripts, on real servers -------------------------------------------------


def _tools_path() -> str:
    """PATH with the redis-server in use and its redis-cli first."""
    directory = Path(redis_server_binary()).parent
    if shutil.which("redis-cli", path=str(directory)) is None:
        pytest.fail(f"no redis-cli next to {redis_server_binary()}")
    return f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"


class Script:
    """One of the overlay's start scripts, run as its pod runs it, until stopped."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        environment = {"PATH": _tools_path(), "SENTINEL_SERVICE": SERVICE, **env}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["sh", str(SENTINEL_OVERLAY / name)], env=environment, stdout=out, stderr=out
            )

    def client(self, port: int) -> redis.Redis:
        """A client of the server the script started, once it answers."""
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True)
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                client.ping()
                return client
            except redis.RedisError:
                time.sleep(0.05)
        raise AssertionError(f"not answering: {self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM, as the kubelet sends; then SIGKILL, as it does after the grace. A
        primary's SIGTERM may wait out Redis's `shutdown-timeout` (10 s) for a lagging
        replica, which a loaded machine makes likely: never leave the server running."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def scripts() -> Iterator[list[Script]]:
    """The scripts a test starts, stopped after it."""
    started: list[Script] = []
    yield started
    for script in started:
        script.stop()


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A running group: a primary, its replica and three Sentinels watching them."""
    running = SentinelGroup(tmp_path_factory.mktemp("sentinel-group")).start()
    yield running
    running.stop()


def _nobody() -> str:
    """A host:port where nothing listens."""
    return f"127.0.0.1:{free_port()}"


def _start_redis(scripts: list[Script], tmp_path: Path, sentinels: str, first: str) -> redis.Redis:
    port = free_port()
    env = {
        "SELF": f"127.0.0.1:{port}",
        "FIRST": first or f"127.0.0.1:{port}",
        "SENTINELS": sentinels,
        "DATA_DIR": str(tmp_path),
        "MAXMEMORY": "64mb",
    }
    scripts.append(Script("redis-state.sh", env, tmp_path / "redis.log"))
    return scripts[-1].client(port)


def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_new_groups_first_pod_starts_as_a_persistent_primary(
    scripts: list[Script], tmp_path: Path
) -> None:
    """With no Sentinel answering, the pod that is FIRST starts as a primary, append-only,
    noeviction under its memory cap, reachable from other pods."""
    with _start_redis(scripts, tmp_path, _nobody(), "") as client:
        assert client.execute_command("ROLE")[0] == "master"
        config = client.config_get("*")
        assert config["appendonly"] == "yes"
        assert config["maxmemory-policy"] == "noeviction"
        assert int(config["maxmemory"]) == 64 * 1024 * 1024
        assert config["protected-mode"] == "no"


def test_a_pod_follows_the_primary_the_sentinels_name(
    scripts: list[Script], tmp_path: Path, group: SentinelGroup
) -> None:
    """A restarted pod replicates the primary the Sentinels name, not the FIRST it was told."""
    sentinels = " ".join(f"127.0.0.1:{s.port}" for s in group.sentinels)
    primary = group.current_primary()
    with _start_redis(scripts, tmp_path, f"{_nobody()} {sentinels}", _nobody()) as client:
        _until(
            lambda: client.info("replication").get("master_link_status") == "up",
            "replication from the Sentinels' primary",
        )
        replication = client.info("replication")
        assert (replication["role"], replication["master_port"]) == ("slave", primary.port)


def _start_sentinel(
    scripts: list[Script], tmp_path: Path, sentinels: str, redis_hosts: str
) -> redis.Redis:
    port = free_port()
    env = {
        "SELF": f"127.0.0.1:{port}",
        "FIRST": _nobody(),
        "SENTINELS": f"127.0.0.1:{port} {sentinels}",
        "REDIS_HOSTS": redis_hosts,
        "CONFIG": str(SENTINEL_OVERLAY / "sentinel.conf"),
        "DATA_DIR": str(tmp_path),
    }
    scripts.append(Script("sentinel.sh", env, tmp_path / "sentinel.log"))
    return scripts[-1].client(port)


def _watched(client: redis.Redis) -> tuple[str, int]:
    """The address the Sentinel watches as the service's primary."""
    masters = client.sentinel_masters()
    assert isinstance(masters, dict)
    return str(masters[SERVICE]["ip"]), int(masters[SERVICE]["port"])


def test_a_sentinel_watches_the_primary_the_others_name(
    scripts: list[Script], tmp_path: Path, group: SentinelGroup
) -> None:
    """A restarted Sentinel watches the primary its peers name, with the overlay's settings."""
    sentinels = " ".join(f"127.0.0.1:{s.port}" for s in group.sentinels)
    with _start_sentinel(scripts, tmp_path, sentinels, "") as client:
        assert _watched(client) == ("127.0.0.1", group.current_primary().port)
        masters = client.sentinel_masters()
        assert isinstance(masters, dict)
        master = masters[SERVICE]
        assert (master["quorum"], master["down-after-milliseconds"]) == (2, 5000)


def test_a_sentinel_without_peers_finds_the_primary_among_the_redis_pods(
    scripts: list[Script], tmp_path: Path
) -> None:
    """With no other Sentinel answering, a Sentinel watches the Redis pod that says it is
    the primary, whatever its place in the list."""
    primary = RedisServer(tmp_path / "primary").start()
    replica = RedisServer(
        tmp_path / "replica", extra=["--replicaof", "127.0.0.1", str(primary.port)]
    )
    replica.start()
    try:
        hosts = f"{_nobody()} 127.0.0.1:{replica.port} 127.0.0.1:{primary.port}"
        with _start_sentinel(scripts, tmp_path / "sentinel", _nobody(), hosts) as client:
            assert _watched(client) == ("127.0.0.1", primary.port)
    finally:
        replica.stop()
        primary.stop()
