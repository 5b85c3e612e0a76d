"""The processes under test: the fake upstream, the gateway and Redis, started and stopped here.

All listen on 127.0.0.1 on a free port and are waited on until they answer; the upstream
and the gateway log to files in the work directory. `stop` always ends them (SIGTERM,
then SIGKILL); a throwaway Redis ends with its `redis_server` block.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import psutil
import redis
import yaml

REPO = Path(__file__).resolve().parent.parent
BENCH_KEY = "gwk_bench-key-not-a-secret"
UPSTREAM_KEY = "bench-upstream-key"
USER_SECRET = "bench-secret"  # noqa: S105
Popen = subprocess.Popen[bytes]


class Wrap(NamedTuple):
    """How to start a process under a tool (bench.counts: callgrind): the command put in
    front of it, variables added to its environment, a name suffix for its files, and how
    long it may take to answer (a process under valgrind starts 20-50 times slower)."""

    prefix: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    suffix: str = ""
    ready_s: float = 30.0


# Variables that would change what the gateway under test talks to.
_CLEARED_ENV = ("REDIS_URL", "CACHE_REDIS_URL", "GATEWAY_CONFIG", "GATEWAY_DEMO_KEY")
# Quota rules of the production shape (user requests/minute, user images/day, team
# usd/month) with limits no benchmark reaches: every request pays the quota step, none
# is refused.
UNREFUSING_QUOTAS: dict[str, Any] = {
    "default": [
        {"unit": "requests", "limit": 10**9, "window": "minute"},
        {"unit": "images", "limit": 10**9, "window": "day"},
    ],
    "teams": {"bench": [{"unit": "usd", "limit": 10**9, "window": "month"}]},
}


def traced(collector_port: int) -> Wrap:
    """Tracing on, every span exported over OTLP/HTTP to the fake upstream's sink
    (`bench/upstream.py`) on `collector_port`: the SDK's defaults otherwise (sample every
    request, export in batches every 5 s from a background thread)."""
    endpoint = f"http://127.0.0.1:{collector_port}"
    return Wrap(env=(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),))


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


def wait_ready(proc: Popen, url: str, log: Path, timeout_s: float = 30) -> float:
    """Poll `url` every 10 ms until it answers 200; the seconds that took.

    Raises `RuntimeError` (with the log) if the process exits or the time runs out.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{url}: process exited with {proc.returncode}:\n{log.read_text()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.01)
    raise RuntimeError(f"{url}: not ready after {timeout_s:g}s:\n{log.read_text()}")


def start_upstream(port: int, delay_ms: float, work: Path) -> Popen:
    """The fake upstream (bench.upstream), ready to serve."""
    log = work / "upstream.log"
    command = [sys.executable, "-m", "bench.upstream", "--port", str(port)]
    proc = _spawn([*command, "--delay-ms", str(delay_ms)], dict(os.environ), log)
    wait_ready(proc, f"http://127.0.0.1:{port}/healthz", log)
    return proc


def start_stack(
    port: int, upstream_port: int, redis_url: str, work: Path, wrap: Wrap | None = None
) -> Popen:
    """The `stack` target (bench.stack), ready; run inside `wrap`'s command if given."""
    wrap = wrap or Wrap()
    log = work / f"stack{wrap.suffix}.log"
    upstream = f"http://127.0.0.1:{upstream_port}/v1"
    command = [sys.executable, "-m", "bench.stack", "--port", str(port), "--upstream", upstream]
    env = {**os.environ, **dict(wrap.env)}
    proc = _spawn([*wrap.prefix, *command, "--redis", redis_url], env, log)
    wait_ready(proc, f"http://127.0.0.1:{port}/healthz", log, wrap.ready_s)
    return proc


def start_naive(port: int, upstream_port: int, work: Path, wrap: Wrap | None = None) -> Popen:
    """The `naive` target (bench.naive), ready; run inside `wrap`'s command if given."""
    wrap = wrap or Wrap()
    log = work / f"naive{wrap.suffix}.log"
    upstream = f"http://127.0.0.1:{upstream_port}/v1"
    command = [sys.executable, "-m", "bench.naive", "--port", str(port), "--upstream", upstream]
    proc = _spawn([*wrap.prefix, *command], {**os.environ, **dict(wrap.env)}, log)
    wait_ready(proc, f"http://127.0.0.1:{port}/healthz", log, wrap.ready_s)
    return proc


def set_upstream_delay(port: int, delay_ms: float) -> None:
    """Change the running fake upstream's delay (see bench.upstream)."""
    url = f"http://127.0.0.1:{port}/bench/delay"
    httpx.put(url, content=str(delay_ms).encode(), timeout=5).raise_for_status()


def write_gateway_config(
    path: Path,
    upstream_port: int,
    quotas: dict[str, Any] | None = None,
    cache: dict[str, Any] | None = None,
    upstream: dict[str, Any] | None = None,
) -> None:
    """One principal (the bench key), the fake upstream, `quotas` (or none), `cache` if given,
    `upstream` settings beside the base URL (the image models, for generations and edits)."""
    config = {
        "upstream": {"base_url": f"http://127.0.0.1:{upstream_port}/v1", **(upstream or {})},
        "principals": [
            {
                "user": "bench",
                "team": "bench",
                "key_sha256": hashlib.sha256(BENCH_KEY.encode()).hexdigest(),
            }
        ],
        "quotas": quotas or {"default": []},
    }
    if cache is not None:
        config["cache"] = cache
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _gateway_command() -> list[str]:
    script = Path(sys.executable).with_name("gateway")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway"]


def launch_gateway(
    port: int,
    upstream_port: int,
    work: Path,
    *,
    quotas: dict[str, Any] | None = None,
    cache: dict[str, Any] | None = None,
    redis_url: str | None = None,
    name: str = "gateway",
    workers: int = 1,
    wrap: Wrap | None = None,
    upstream: dict[str, Any] | None = None,
) -> tuple[Popen, float]:
    """`gateway serve` with a generated config (in-process stores unless `redis_url`, which
    becomes `REDIS_URL`: the quota store and, without `CACHE_REDIS_URL`, the cache's), ready;
    and the seconds from spawning the command to `/readyz` answering 200 (with several
    workers: to the last worker's start-up being complete). `wrap`: see `Wrap`."""
    wrap = wrap or Wrap()
    config, log = work / f"{name}.yaml", work / f"{name}.log"
    write_gateway_config(config, upstream_port, quotas, cache, upstream)
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}
    env.update(OPENAI_API_KEY=UPSTREAM_KEY, GATEWAY_USER_SECRET=USER_SECRET)
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(dict(wrap.env))
    args = ["serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    started = time.monotonic()
    command = [*wrap.prefix, *_gateway_command(), *args, "--workers", str(workers)]
    proc = _spawn(command, env, log)
    wait_ready(proc, f"http://127.0.0.1:{port}/readyz", log, wrap.ready_s)
    if workers > 1:
        _wait_workers(proc, workers, f"http://127.0.0.1:{port}/readyz", log)
    return proc, time.monotonic() - started


def _wait_workers(proc: Popen, workers: int, url: str, log: Path, timeout_s: float = 30) -> None:
    """Wait until every worker answers: one worker up is not a started gateway."""
    deadline = time.monotonic() + timeout_s
    while (
        len(psutil.Process(proc.pid).children()) < workers
        or log.read_text().count("Application startup complete") < workers
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: fewer than {workers} workers started:\n{log.read_text()}")
        time.sleep(0.01)


@contextlib.contextmanager
def redis_server(*, from_env: bool = True, timeout_s: float = 10) -> Iterator[str]:
    """$REDIS_URL (if `from_env`), else a throwaway redis-server from PATH for the block.

    The throwaway one listens on 127.0.0.1 on a free port, keeps nothing on disk, and is
    waited on until it answers PING; it is stopped when the block ends.
    """
    if from_env and os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("bench: needs redis-server on PATH (Debian/Ubuntu: apt-get install redis-server)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_redis(proc, url, timeout_s)
        yield url
    finally:
        stop(proc)


def _wait_redis(proc: Popen, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server on {url} exited with {proc.returncode}")
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on {url}: no answer to PING after {timeout_s:g}s")


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


def child_pid(name: str) -> int | None:
    """The pid of this process's newest live child named `name`, if any."""
    found = [c for c in psutil.Process().children() if c.name() == name]
    return int(found[-1].pid) if found else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its live descendants."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total
