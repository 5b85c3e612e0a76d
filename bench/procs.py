"""The processes under test: the fake upstream and the gateway, started and stopped here.

Both listen on 127.0.0.1 on a free port, log to files in the work directory, and are
waited on until they answer. `stop` always ends them (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
import yaml

REPO = Path(__file__).resolve().parent.parent
BENCH_KEY = "gwk_bench-key-not-a-secret"
UPSTREAM_KEY = "bench-upstream-key"
USER_SECRET = "bench-secret"  # noqa: S105
Popen = subprocess.Popen[bytes]
# Variables that would change what the gateway under test talks to.
_CLEARED_ENV = ("REDIS_URL", "CACHE_REDIS_URL", "GATEWAY_CONFIG", "GATEWAY_DEMO_KEY")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(command: list[str], env: dict[str, str], log: Path) -> Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )


def wait_ready(proc: Popen, url: str, log: Path, timeout_s: float = 30) -> None:
    """Poll `url` until it answers 200; raises `RuntimeError` (with the log) otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url}: not ready after {timeout_s:g}s:\n{log.read_text()}")


def start_upstream(port: int, delay_ms: float, work: Path) -> Popen:
    """The fake upstream (bench.upstream), ready to serve."""
    log = work / "upstream.log"
    command = [sys.executable, "-m", "bench.upstream", "--port", str(port)]
    proc = _spawn([*command, "--delay-ms", str(delay_ms)], dict(os.environ), log)
    wait_ready(proc, f"http://127.0.0.1:{port}/healthz", log)
    return proc


def write_gateway_config(
    path: Path, upstream_port: int, quotas: dict[str, Any] | None = None
) -> None:
    """A config with one principal (the bench key), the fake upstream, and `quotas` (or none)."""
    config = {
        "upstream": {"base_url": f"http://127.0.0.1:{upstream_port}/v1"},
        "principals": [
            {
                "user": "bench",
                "team": "bench",
                "key_sha256": hashlib.sha256(BENCH_KEY.encode()).hexdigest(),
            }
        ],
        "quotas": quotas or {"default": []},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _gateway_command() -> list[str]:
    script = Path(sys.executable).with_name("gateway")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway"]


def start_gateway(
    port: int,
    upstream_port: int,
    work: Path,
    *,
    quotas: dict[str, Any] | None = None,
    redis_url: str | None = None,
    name: str = "gateway",
) -> Popen:
    """`gateway serve` with a generated config (in-process store unless `redis_url`), ready."""
    config, log = work / f"{name}.yaml", work / f"{name}.log"
    write_gateway_config(config, upstream_port, quotas)
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}
    env.update(OPENAI_API_KEY=UPSTREAM_KEY, GATEWAY_USER_SECRET=USER_SECRET)
    if redis_url:
        env["REDIS_URL"] = redis_url
    args = ["serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    proc = _spawn([*_gateway_command(), *args], env, log)
    wait_ready(proc, f"http://127.0.0.1:{port}/readyz", log)
    return proc


def stop(proc: Popen | None) -> None:
    """End a process started here: SIGTERM, then SIGKILL after 10 seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its live descendants."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total
