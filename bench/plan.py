"""The matrix: which cells run, in which order.

Five kinds of cell, each answering one question of the performance issues:

- `fast`: a zero-latency upstream at `--concurrency` (1 and 32): what the proxy itself
  costs per request, in CPU and latency, next to `direct`, `nginx` and `naive`;
- `inflight`: an upstream answering in `--inflight-delay-ms` (200) with `--inflight` (128)
  connections: does throughput stay near the ideal, conc / delay, with many requests in
  flight (the production case: real image calls take seconds);
- `memory`: `--memory-uploads` (200) connections uploading `--memory-size` (3.9m) through
  the gateway at once: its peak RSS per worker, and that no request fails;
- `slow`: `--slow` (1,000) callers at once, each one request with its own image, half of
  them chunked, against an upstream answering in `--slow-delay-s` (20 s), at each
  `--slow-sizes` (50k, 1m): is every one answered, in about the delay, with bounded memory
  (today's image models answer in 10 to 60 s; bench/crowd.py);
- `flood`: the gateway's zero-latency concurrency-1 cell at the first `--sizes`, measured
  again while `--flood` (1,000) connections without a key knock at once and again: a valid
  caller's p99 next to its normal one.

Every cell runs against the first `--workers` value; the gateway's miss path then runs again
with each other value (at the concurrencies above 1, and in flight), so that one table shows
how it scales. Cells are ordered to restart the gateway and change the upstream's delay as
rarely as possible.
"""

from __future__ import annotations

import argparse
from typing import Literal, NamedTuple

Kind = Literal["fast", "inflight", "memory", "slow", "flood"]
TARGETS = ("direct", "nginx", "naive", "stack", "gateway", "gateway-nostore", "gateway-hit")
# Measured at zero latency only: a yardstick of CPU per request, not of capacity (its
# default httpx pool holds 100 connections, its uploads spool to disk past 1 MB).
FAST_ONLY = frozenset({"gateway-hit", "gateway-nostore", "naive"})
GATEWAY_TARGETS = frozenset({"gateway", "gateway-nostore", "gateway-hit"})
REDIS_TARGETS = GATEWAY_TARGETS | {"stack"}


class Spec(NamedTuple):
    """One cell to measure."""

    kind: Kind
    target: str
    workers: int  # the gateway's; 1 for direct and nginx (not in the path)
    size: str
    concurrency: int
    delay_ms: float

    @property
    def through_gateway(self) -> bool:
        return self.target in GATEWAY_TARGETS

    @property
    def through_redis(self) -> bool:
        return self.target in REDIS_TARGETS


def _first_workers(args: argparse.Namespace, workers: int) -> list[Spec]:
    targets = args.targets
    cells = [
        Spec("fast", target, workers, size, conc, args.delay_ms)
        for size in args.sizes
        for conc in args.concurrency
        for target in targets
    ]
    if args.inflight:
        cells += [
            Spec("inflight", target, workers, size, args.inflight, args.inflight_delay_ms)
            for size in args.inflight_sizes
            for target in targets
            if target not in FAST_ONLY
        ]
    if args.memory_uploads and "gateway" in targets:
        cells.append(
            Spec(
                "memory",
                "gateway",
                workers,
                args.memory_size,
                args.memory_uploads,
                args.inflight_delay_ms,
            )
        )
    if args.flood and "gateway" in targets:
        cells.append(Spec("flood", "gateway", workers, args.sizes[0], 1, args.delay_ms))
    if args.slow:
        cells += [
            Spec("slow", target, workers, size, args.slow, args.slow_delay_s * 1000)
            for size in args.slow_sizes
            for target in targets
            if target not in FAST_ONLY
        ]
    return cells


def _other_workers(args: argparse.Namespace, workers: int) -> list[Spec]:
    if "gateway" not in args.targets:
        return []
    cells = []
    if args.inflight:
        cells += [
            Spec("inflight", "gateway", workers, size, args.inflight, args.inflight_delay_ms)
            for size in args.inflight_sizes
        ]
    cells += [
        Spec("fast", "gateway", workers, size, conc, args.delay_ms)
        for size in args.sizes
        for conc in args.concurrency
        if conc > 1
    ]
    return cells


def build_plan(args: argparse.Namespace) -> list[Spec]:
    """Every cell of the run, in the order it is measured."""
    first, *others = args.workers
    cells = _first_workers(args, first)
    for workers in others:
        cells += _other_workers(args, workers)
    return cells
