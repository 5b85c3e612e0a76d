"""The processes of one bench run, and the measurement of one cell against them.

The fake upstream runs for the whole session (its delay is changed between cells, not
restarted); nginx too, when it is a target. Redis and the gateway start when a gateway
target is measured; the gateway is restarted only when the next cell wants another number
of workers, and each start is timed (spawn to `/readyz` answering 200) and smoke-tested.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
from pathlib import Path
from typing import NamedTuple

import httpx

from bench import memory, procs
from bench.crowd import Crowd, Flood
from bench.images import BenchImage, with_unique_chunk
from bench.nginx import start_nginx
from bench.plan import GATEWAY_TARGETS, REDIS_TARGETS, Spec
from bench.report import Cell
from bench.wrk import Load, WrkResult, run_wrk

PATH = "/v1/images/variations"
# The gateway targets share one gateway process; each expects this x-gateway-cache value on
# every answer. `gateway` uploads a different image in every request (wrk_unique.lua), so
# each one takes the whole miss path: cache lookup, quota reserve, the coalescing lock,
# upstream, store, settle. `gateway-hit` sends the same image every time: after the first,
# every one is a hit. `gateway-nostore` is `gateway` with `Cache-Control: no-store`: the cache
# bypassed, as with the cache off (no hashing, no lookup, no store).
EXPECTED_CACHE = {"gateway": "MISS", "gateway-nostore": "BYPASS", "gateway-hit": "HIT"}
EXTRA_HEADERS = {"gateway-nostore": ("Cache-Control: no-store",)}
# `stack` too, so that wrk does the same work per request as for `gateway`.
UNIQUE_IMAGE = frozenset({"gateway", "gateway-nostore", "stack"})
GATEWAY_CACHE = {"enabled": True}
MEMORY_SECONDS = 10


class Startup(NamedTuple):
    """One gateway start: its worker count and the seconds to `/readyz` answering 200."""

    workers: int
    seconds: float


def send_once(load: Load) -> httpx.Response:
    """The benchmark's request, once, with httpx (with an image of its own if the load has)."""
    headers = {"authorization": f"Bearer {load.key}", "content-type": load.content_type}
    for header in load.headers:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    body = load.body_path.read_bytes()
    if load.unique_image:
        body = with_unique_chunk(body, secrets.token_hex(8))
    return httpx.post(load.url, content=body, headers=headers, timeout=30)


def curl_command(load: Load) -> str:
    """A curl command line that sends the benchmark's request once (for a unique-image load,
    with the body file's own image, which the cache may hold by then)."""
    extra = "".join(f" -H '{header}'" for header in load.headers)
    return (
        f"curl -sS -i {load.url} -H 'Authorization: Bearer {load.key}' "
        f"-H 'Content-Type: {load.content_type}'{extra} --data-binary @{load.body_path}"
    )


def smoke(target: str, load: Load) -> bool:
    """One request before measuring (two for `gateway-hit`, whose first may be the miss that
    fills the cache): 200 and the target's x-gateway-cache, else the answer and a curl."""
    response = send_once(load)
    expected = EXPECTED_CACHE.get(target)
    cache = response.headers.get("x-gateway-cache")
    if target == "gateway-hit" and response.status_code == 200 and cache != expected:
        response = send_once(load)
        cache = response.headers.get("x-gateway-cache")
    if response.status_code == 200 and cache == expected:
        shown = f" x-gateway-cache: {cache}" if expected else ""
        print(f"smoke {target}: 200{shown} {response.text[:80]}", flush=True)
        return True
    print(
        f"\n!!! smoke {target}: HTTP {response.status_code}, x-gateway-cache {cache} "
        f"(expected {expected}): {response.text[:500]}",
        flush=True,
    )
    print(f"!!! reproduce with: {curl_command(load)}\n", flush=True)
    return False


class Session:
    """The running processes and what every cell needs to be measured."""

    def __init__(
        self, args: argparse.Namespace, wrk: str, nginx: str | None, images: dict[str, BenchImage]
    ) -> None:
        self.args, self.wrk, self.nginx_binary, self.images = args, wrk, nginx, images
        self.work: Path = args.work_dir
        self.ports: dict[str, int] = {}
        self.upstream: procs.Popen | None = None
        self.nginx: procs.Popen | None = None
        self.stack: procs.Popen | None = None
        self.naive: procs.Popen | None = None
        self.gateway: procs.Popen | None = None
        self.gateway_workers = 0
        self.redis_url: str | None = None
        self.redis_pid: int | None = None
        self.delay_ms = args.delay_ms
        self.startups: list[Startup] = []
        self.smoked = True
        self._exit = contextlib.ExitStack()

    def start(self, targets: set[str]) -> None:
        """The fake upstream, nginx if it is a target, and a throwaway Redis for the gateway.

        Never the Redis of $REDIS_URL: the bench must not write into a shared one.
        """
        self.ports["direct"] = procs.free_port()
        self.upstream = procs.start_upstream(self.ports["direct"], self.delay_ms, self.work)
        self._smoke("direct")
        if "nginx" in targets and self.nginx_binary:
            self.ports["nginx"] = procs.free_port()
            self.nginx = start_nginx(
                self.nginx_binary, self.ports["nginx"], self.ports["direct"], self.work
            )
            self._smoke("nginx")
        if "naive" in targets:
            self.ports["naive"] = procs.free_port()
            self.naive = procs.start_naive(self.ports["naive"], self.ports["direct"], self.work)
            self._smoke("naive")
        if targets & REDIS_TARGETS:
            self.redis_url = self._exit.enter_context(procs.redis_server(from_env=False))
            self.redis_pid = procs.child_pid("redis-server")
        if "stack" in targets and self.redis_url:
            self.ports["stack"] = procs.free_port()
            self.stack = procs.start_stack(
                self.ports["stack"], self.ports["direct"], self.redis_url, self.work
            )
            self._smoke("stack")

    def stop(self) -> None:
        """Stop whatever was started."""
        procs.stop(self.gateway)
        procs.stop(self.stack)
        procs.stop(self.naive)
        procs.stop(self.nginx)
        procs.stop(self.upstream)
        self._exit.close()

    def _smoke(self, target: str) -> None:
        size = self.args.sizes[0]
        self.smoked = smoke(target, self.load(target, self.images[size])) and self.smoked

    def _gateway(self, workers: int) -> None:
        """A gateway with `workers` workers, (re)started if the running one has another count."""
        if self.gateway is not None and self.gateway_workers == workers:
            return
        procs.stop(self.gateway)
        assert self.redis_url is not None
        port = self.ports.get("gateway") or procs.free_port()
        self.gateway, seconds = procs.launch_gateway(
            port,
            self.ports["direct"],
            self.work,
            quotas=procs.UNREFUSING_QUOTAS,
            cache=GATEWAY_CACHE,
            redis_url=self.redis_url,
            workers=workers,
            name=f"gateway-w{workers}",
            wrap=procs.traced(self.ports["direct"]) if self.args.tracing else None,
        )
        self.gateway_workers = workers
        self.startups.append(Startup(workers, seconds))
        print(f"gateway with {workers} worker(s): /readyz 200 after {seconds:.2f} s", flush=True)
        self.ports.update(dict.fromkeys(GATEWAY_TARGETS, port))
        for target in sorted(GATEWAY_TARGETS & set(self.args.targets)):
            self._smoke(target)

    def upstream_delay(self, delay_ms: float) -> None:
        """Make the fake upstream answer after `delay_ms` from now on."""
        self._delay(delay_ms)

    def _delay(self, delay_ms: float) -> None:
        if delay_ms != self.delay_ms:
            procs.set_upstream_delay(self.ports["direct"], delay_ms)
            self.delay_ms = delay_ms

    def load(self, target: str, image: BenchImage) -> Load:
        """What wrk sends to `target` for `image`."""
        body = self.work / f"body-{image.label}.bin"
        url = f"http://127.0.0.1:{self.ports[target]}{PATH}"
        key = procs.BENCH_KEY if target in GATEWAY_TARGETS else procs.UPSTREAM_KEY
        headers = EXTRA_HEADERS.get(target, ())
        return Load(url, body, key, image.content_type, headers, target in UNIQUE_IMAGE)

    def _cpu(self, spec: Spec) -> tuple[float, float, float]:
        """CPU seconds so far of the proxy in the path (gateway, stack, naive, nginx), upstream,
        Redis."""
        proxies = {"nginx": self.nginx, "stack": self.stack, "naive": self.naive}
        proxy = proxies.get(spec.target, self.gateway)
        in_path = spec.target != "direct" and proxy is not None
        redis = spec.through_redis and self.redis_pid is not None
        assert self.upstream is not None
        return (
            procs.cpu_seconds(proxy.pid) if in_path and proxy else 0.0,
            procs.cpu_seconds(self.upstream.pid),
            procs.cpu_seconds(self.redis_pid) if redis and self.redis_pid else 0.0,
        )

    def _crowd(self, spec: Spec, load: Load) -> WrkResult:
        """The slow cell's callers, all at once (bench/crowd.py), each given the delay plus
        the harness's per-request timeout to be answered."""
        headers = {"authorization": f"Bearer {load.key}", "content-type": load.content_type}
        port = self.ports[spec.target]
        crowd = Crowd(port, PATH, headers, self.images[spec.size].body)
        return asyncio.run(crowd.run(spec.concurrency, spec.delay_ms / 1000 + self.args.timeout))

    def cell(self, spec: Spec) -> Cell:
        """Warm up, then measure one cell with wrk (the slow cells: with bench/crowd.py) and
        the CPU the processes spent on it."""
        if spec.through_gateway:
            self._gateway(spec.workers)
        self._delay(spec.delay_ms)
        load, args = self.load(spec.target, self.images[spec.size]), self.args
        run = {"connections": spec.concurrency, "timeout_s": args.timeout}
        if spec.target == "gateway-hit":  # fill the cache, so even without warm-up all are hits
            send_once(load)
        burst = spec.kind == "memory"
        rss = spec.kind in ("memory", "slow") and spec.through_gateway
        pids = memory.workers(self.gateway.pid) if rss and self.gateway else []
        name = f"{spec.kind}-{spec.target}-w{spec.workers}-{spec.size}-c{spec.concurrency}"
        log = self.work / f"wrk-{name}.log"
        # A burst is measured from its start, in one longer run: a warm-up cut off would leave
        # hundreds of uploads, already in the gateway's socket buffers, for the run to pay for.
        seconds = max(MEMORY_SECONDS, args.duration + args.warmup) if burst else args.duration
        with memory.peak_rss(pids) as peaks:
            if args.warmup and not burst and spec.kind != "slow":
                run_wrk(self.wrk, load, seconds=args.warmup, log=None, **run)
            before = self._cpu(spec)
            if spec.kind == "slow":
                result = self._crowd(spec, load)
            elif spec.kind == "flood":
                with Flood(self.ports[spec.target], PATH, args.flood):
                    result = run_wrk(self.wrk, load, seconds=seconds, log=log, **run)
            else:
                result = run_wrk(self.wrk, load, seconds=seconds, log=log, **run)
            after = self._cpu(spec)
        per_request = 1000.0 / result.requests if result.requests else 0.0
        in_path = spec.target != "direct"
        return Cell(
            spec=spec,
            png_bytes=len(self.images[spec.size].png),
            result=result,
            proxy_cpu_ms=(after[0] - before[0]) * per_request if in_path else None,
            upstream_cpu_ms=(after[1] - before[1]) * per_request,
            redis_cpu_ms=(after[2] - before[2]) * per_request if spec.through_redis else None,
            expected_cache=EXPECTED_CACHE.get(spec.target),
            peak_rss_mb=max(peaks.values()) if peaks else None,
        )
