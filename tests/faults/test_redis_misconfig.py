"""`gateway serve` pointed at the wrong Redis: a URL naming another topology, a TLS server
whose certificate the client refuses. Each refusal is one line on stderr naming the
problem and exit code 2, never a worker's traceback; and a TLS Redis shared by the store
and the cache (CACHE_REDIS_URL unset, or equal) serves both.

Real redis-server processes on loopback (a standalone server, a Cluster, a Sentinel group,
TLS servers with certificates the test makes) and the real `gateway serve` process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.config import ENV, auth, base_config, merged, write_config
from support.fake_upstream import FakeUpstream
from support.pngs import make_png
from support.redis_topologies import SERVICE, RedisClusterGroup, SentinelGroup
from support.servers import GatewayProcess, RedisServer, free_port
from support.tls import TlsFiles, make_tls_files, tls_server_args

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


def _serve(
    tmp_path: Path, config: dict[str, Any], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`gateway serve` with `config` and `env`, expected to refuse to start."""
    path = write_config(tmp_path / "gateway.yaml", config)
    args = [sys.executable, "-m", "gateway", "serve", "--config", str(path)]
    args += ["--port", str(free_port())]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "OPENAI_"))}
    return subprocess.run(
        args, env={**clean, **ENV, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def _refused(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one line of a refusal: exit 2, no traceback, the line names `words`."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("gateway: warning")]
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _hosts(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


WRONG_PAIRINGS = {
    # name: (scheme and path around the hosts, the servers it is pointed at, what the line says)
    "cluster URL at a standalone server": ("redis+cluster://{}", "standalone", "standalone server"),
    "cluster URL at a sentinel": ("redis+cluster://{}", "sentinel", "sentinel server"),
    "sentinel URL at a cluster node": (
        f"redis+sentinel://{{}}/{SERVICE}",
        "cluster",
        "cluster server",
    ),
    "sentinel URL at a standalone server": (
        f"redis+sentinel://{{}}/{SERVICE}",
        "standalone",
        "standalone server",
    ),
    "plain URL at a cluster node": ("redis://{}/0", "cluster", "cluster server"),
    "plain URL at a sentinel": ("redis://{}/0", "sentinel", "sentinel server"),
    "sentinel URL naming an unknown service": (
        "redis+sentinel://{}/no-such-service",
        "sentinel",
        "does not know the service",
    ),
}


@pytest.mark.parametrize("pairing", list(WRONG_PAIRINGS))
def test_a_wrong_topology_is_one_line_and_exit_2(
    pairing: str,
    tmp_path: Path,
    redis_url: str,
    redis_cluster: RedisClusterGroup,
    redis_sentinel: SentinelGroup,
) -> None:
    """Every wrong pairing of URL form and server ends serve with exit 2 and the one line
    naming what the server is, no uvicorn traceback around it."""
    form, kind, says = WRONG_PAIRINGS[pairing]
    first = {
        "standalone": _hosts(redis_url),
        "cluster": f"127.0.0.1:{redis_cluster.nodes[0].port}",
        "sentinel": f"127.0.0.1:{redis_sentinel.sentinels[0].port}",
    }[kind]
    done = _serve(tmp_path, base_config("http://127.0.0.1:9"), {"REDIS_URL": form.format(first)})
    _refused(done, says)


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("certs")


@pytest.fixture(scope="module")
def good_tls(tls_dir: Path) -> TlsFiles:
    """A CA, a server certificate for `localhost`, a client one."""
    return make_tls_files(tls_dir / "good")


def _tls_redis(files: TlsFiles, workdir: Path) -> RedisServer:
    """A TLS-only redis-server with `files`' server certificate (checked by nothing)."""
    port = free_port()
    probe = {"ssl": True, "ssl_cert_reqs": "none", "ssl_certfile": str(files.client_cert)}
    probe["ssl_keyfile"] = str(files.client_key)
    server = RedisServer(workdir, extra=tls_server_args(files, port), probe=probe)
    server.port = port
    return server.start()


@pytest.fixture(scope="module")
def tls_redis(good_tls: TlsFiles, tls_dir: Path) -> Iterator[RedisServer]:
    server = _tls_redis(good_tls, tls_dir / "redis-good")
    yield server
    server.stop()


def _tls_config(files: TlsFiles, ca: Path | None = None) -> dict[str, Any]:
    tls = {"ca_file": str(ca or files.ca), "cert_file": str(files.client_cert)}
    tls["key_file"] = str(files.client_key)
    return merged(base_config("http://127.0.0.1:9"), {"store": {"redis": {"tls": tls}}})


def test_a_server_signed_by_another_ca_is_refused_at_start_up(
    tmp_path: Path, tls_dir: Path, good_tls: TlsFiles, tls_redis: RedisServer
) -> None:
    """ca_file naming a CA that did not sign the server's certificate: serve refuses to
    start, saying the certificate was refused and that ca_file must be its CA."""
    other = make_tls_files(tls_dir / "other")
    config = _tls_config(good_tls, ca=other.ca)
    done = _serve(tmp_path, config, {"REDIS_URL": f"rediss://localhost:{tls_redis.port}/0"})
    _refused(done, "certificate refused", "ca_file")


def test_a_server_named_otherwise_than_its_certificate_is_refused(
    tmp_path: Path, good_tls: TlsFiles, tls_redis: RedisServer
) -> None:
    """The certificate names localhost; reached as 127.0.0.1 serve refuses, naming the
    mismatch and the way out."""
    done = _serve(
        tmp_path, _tls_config(good_tls), {"REDIS_URL": f"rediss://127.0.0.1:{tls_redis.port}/0"}
    )
    _refused(done, "certificate refused", "mismatch", "check_hostname")


def test_an_expired_server_certificate_is_refused(tmp_path: Path, tls_dir: Path) -> None:
    """A server whose certificate has expired: serve refuses, saying it expired."""
    expired = make_tls_files(tls_dir / "expired", expired=True)
    server = _tls_redis(expired, tmp_path / "redis")
    try:
        done = _serve(
            tmp_path, _tls_config(expired), {"REDIS_URL": f"rediss://localhost:{server.port}/0"}
        )
    finally:
        server.stop()
    _refused(done, "certificate refused", "expired")


@pytest.mark.parametrize("cache_url", ["unset", "equal"])
def test_a_tls_redis_shared_by_the_store_and_the_cache_serves_both(
    cache_url: str,
    start_gateway: Callable[..., GatewayProcess],
    upstream: FakeUpstream,
    good_tls: TlsFiles,
    tls_redis: RedisServer,
) -> None:
    """CACHE_REDIS_URL unset or equal to REDIS_URL: the cache reaches the TLS Redis with the
    store's TLS settings, so the same request twice is one upstream call and a cache hit."""
    url = f"rediss://localhost:{tls_redis.port}/0"
    env = {"REDIS_URL": url, **({"CACHE_REDIS_URL": url} if cache_url == "equal" else {})}
    config = merged(_tls_config(good_tls), {"cache": {"enabled": True}})
    config["upstream"]["base_url"] = upstream.url
    gateway = start_gateway(config, env)
    image = make_png(24)
    answers = [
        httpx.post(
            gateway.url + "/v1/images/variations",
            headers=auth("alice"),
            files={"image": ("a.png", image, "image/png")},
            data={"size": "256x256"},
            timeout=10,
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert [a.headers["x-gateway-cache"] for a in answers] == ["MISS", "HIT"]
    assert len(upstream.received) == 1
    with tls_redis.client() as client:
        assert list(client.scan_iter(match="gw:v1:cache:*"))
