"""Quota benchmarks on a real Redis: the cost of the quota step, and exactness under a burst.

    .venv/bin/python -m bench.quota [--calls 5000] [--burst 500] [--limit 100]

1. Latency of `QuotaLedger.reserve` (one Lua check-and-charge over 3 counters: user
   requests/minute, user images/day, team usd/month) and of `settle` (a refund), called
   in a loop, next to the in-process store; then `reserve` again with alert thresholds
   (50/80/95/100 %) on the two budgets, the cost of the threshold check on every charge.
2. Two `gateway serve` processes on one Redis with a limit of `--limit` requests a day;
   `--burst` concurrent requests spread over both. Exactly `--limit` must be admitted.

Uses $REDIS_URL if set (any form the gateway takes: redis+cluster://..., for the cost on
a Cluster), else a throwaway redis-server from PATH on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench import procs
from bench.images import noise_png
from gateway.auth.base import Identity
from gateway.quota.counters import request_cost
from gateway.quota.ledger import QuotaLedger
from gateway.quota.policy import QuotaPolicy
from gateway.settings.config import parse_config
from gateway.store.base import Store
from gateway.store.connect import connect
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore
from gateway.store.urls import parse_url

RULES = procs.UNREFUSING_QUOTAS
WHO = Identity("bench", "bench")


def _percentiles(samples: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99)] * 1000


async def _time_calls(
    store: Store, calls: int, alerts: bool = False
) -> dict[str, tuple[float, float]]:
    config = parse_config({"quotas": RULES})
    percents = (50, 80, 95, 100) if alerts else ()
    policy = QuotaPolicy(config.quotas, {("team", "bench"): percents, ("user", "bench"): percents})
    ledger = QuotaLedger(config.quotas, store, policy=lambda: policy)
    cost = request_cost(2, config.prices["512x512"])
    reserve, settle = [], []
    for _ in range(calls):
        started = time.perf_counter()
        reservation = await ledger.reserve(WHO, cost)
        middle = time.perf_counter()
        await ledger.settle(reservation, delivered=1, asked=2)
        settle.append(time.perf_counter() - middle)
        reserve.append(middle - started)
    if alerts:
        return {"reserve, thresholds on 2 budgets": _percentiles(reserve)}
    return {"reserve": _percentiles(reserve), "settle (refund)": _percentiles(settle)}


async def quota_step(redis_url: str, calls: int) -> list[str]:
    """Markdown rows: p50/p99 of reserve and settle, Redis and memory."""
    rows = []
    redis_store = RedisStore(connect(redis_url))
    try:
        for name, store in (("redis", redis_store), ("memory", MemoryStore())):
            for alerts in (False, True):
                for step, (p50, p99) in (await _time_calls(store, calls, alerts)).items():
                    rows.append(f"| {name} | {step} | {calls} | {p50:.3f} | {p99:.3f} |")
    finally:
        await redis_store.close()
    return rows


async def _burst(urls: Sequence[str], count: int) -> dict[int, int]:
    body = noise_png(50_000)
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        calls = [
            client.post(
                urls[i % len(urls)] + "/v1/images/variations",
                headers={"Authorization": f"Bearer {procs.BENCH_KEY}"},
                files={"image": ("image.png", body, "image/png")},
                data={"size": "256x256"},
            )
            for i in range(count)
        ]
        statuses: dict[int, int] = {}
        for response in await asyncio.gather(*calls):
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        return statuses


def _forget_usage(redis_url: str) -> None:
    """Delete the bench principal's counters (on a Cluster, on the node of its slot)."""
    import redis
    from redis.cluster import RedisCluster

    target = parse_url(redis_url)
    client: redis.Redis | RedisCluster = (
        RedisCluster(*target.hosts[0])
        if target.topology == "cluster"
        else redis.Redis.from_url(redis_url)
    )
    with client:
        for key in client.scan_iter(match="gw:v1:quota:{q}:*"):
            client.delete(key)


def burst(redis_url: str, count: int, limit: int, work: Path) -> dict[int, int]:
    """Statuses of `count` concurrent requests over two gateways sharing `redis_url`."""
    _forget_usage(redis_url)
    quotas = {"default": [{"unit": "requests", "limit": limit, "window": "day"}]}
    upstream_port = procs.free_port()
    started: list[procs.Popen] = []
    try:
        started.append(procs.start_upstream(upstream_port, 0, work))
        ports = [procs.free_port(), procs.free_port()]
        for i, port in enumerate(ports):
            gateway, _ = procs.launch_gateway(
                port, upstream_port, work, quotas=quotas, redis_url=redis_url, name=f"gw{i}"
            )
            started.append(gateway)
        return asyncio.run(_burst([f"http://127.0.0.1:{p}" for p in ports], count))
    finally:
        for proc in reversed(started):
            procs.stop(proc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.quota", description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args(argv)
    work = Path(__file__).parent / ".work"
    work.mkdir(exist_ok=True)
    with procs.redis_server() as url:
        rows = asyncio.run(quota_step(url, args.calls))
        statuses = burst(url, args.burst, args.limit, work)
    print("| store | step | calls | p50 ms | p99 ms |\n|---|---|---|---|---|")
    print("\n".join(rows))
    admitted = statuses.get(200, 0)
    verdict = "exact" if admitted == args.limit else "WRONG"
    print(
        f"\nburst: {args.burst} concurrent requests over 2 processes, limit {args.limit}: "
        f"admitted {admitted} ({verdict}); statuses {dict(sorted(statuses.items()))}"
    )
    return 0 if admitted == args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
