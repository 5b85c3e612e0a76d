"""The results: one table per kind of cell, ratios to `direct` and `nginx` of the same run,
and the problems.

A cell with any non-2xx answer or socket error is never folded silently into the numbers:
its count is shown in bold and listed under the tables with its status codes. So is a
gateway cell where any answer's `x-gateway-cache` is not the one its target measures
(e.g. a MISS in the cache-hit target).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.plan import Kind, Spec
from bench.wrk import WrkResult


@dataclass(frozen=True)
class Cell:
    """One measured cell of the matrix."""

    spec: Spec
    png_bytes: int
    result: WrkResult
    proxy_cpu_ms: float | None  # per request, gateway's or nginx's tree; None for direct
    upstream_cpu_ms: float
    redis_cpu_ms: float | None = None  # per request; None when no Redis was in the path
    expected_cache: str | None = None  # the x-gateway-cache value every answer must carry
    peak_rss_mb: float | None = None  # highest peak RSS of any gateway worker (memory cells)

    @property
    def cache_mismatch(self) -> bool:
        """True when some answer's x-gateway-cache was not `expected_cache`."""
        if self.expected_cache is None:
            return False
        return self.result.cache.get(self.expected_cache, 0) != self.result.requests

    @property
    def failed(self) -> bool:
        """True on any non-2xx, socket error or unexpected x-gateway-cache, or no answers."""
        r = self.result
        return r.non_2xx > 0 or r.errors > 0 or r.requests == 0 or self.cache_mismatch

    @property
    def ideal_rps(self) -> float | None:
        """conc / delay: what a free proxy would give with a slow upstream."""
        delay = self.spec.delay_ms
        return self.spec.concurrency * 1000 / delay if delay else None


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value is not None and base else "—"


def _flag(count: int) -> str:
    return f"**{count} ⚠**" if count else "0"


class Peers:
    """The `direct`, `nginx` and `naive` cells of the run, by image, concurrency and delay."""

    def __init__(self, cells: Sequence[Cell]) -> None:
        self._by: dict[tuple[str, str, int, float], Cell] = {
            (c.spec.target, c.spec.size, c.spec.concurrency, c.spec.delay_ms): c
            for c in cells
            if c.spec.target in ("direct", "nginx", "naive")
        }

    def of(self, target: str, cell: Cell) -> Cell | None:
        """`target`'s cell with the same load as `cell` (None for that very cell)."""
        s = cell.spec
        peer = self._by.get((target, s.size, s.concurrency, s.delay_ms))
        return None if peer is cell else peer


Column = tuple[str, Callable[[Cell, Peers], str]]


def _vs(target: str, field: str) -> Callable[[Cell, Peers], str]:
    def ratio(cell: Cell, peers: Peers) -> str:
        peer = peers.of(target, cell)
        return _ratio(getattr(cell.result, field), getattr(peer.result, field) if peer else None)

    return ratio


def _added_p50(cell: Cell, peers: Peers) -> str:
    direct = peers.of("direct", cell)
    return _ms(cell.result.p50_ms - direct.result.p50_ms) if direct else "—"


def _naive_cpu(cell: Cell, peers: Peers) -> float | None:
    naive = peers.of("naive", cell)
    return naive.proxy_cpu_ms if naive else None


COLUMNS: dict[str, Callable[[Cell, Peers], str]] = {
    "target": lambda c, _: c.spec.target,
    "workers": lambda c, _: str(c.spec.workers) if c.spec.through_gateway else "—",
    "image": lambda c, _: f"{c.spec.size} ({c.png_bytes / 1e6:.2f} MB)",
    "conc": lambda c, _: str(c.spec.concurrency),
    "delay ms": lambda c, _: f"{c.spec.delay_ms:g}",
    "requests": lambda c, _: str(c.result.requests),
    "req/s": lambda c, _: f"{c.result.rps:.1f}",
    "vs ideal": lambda c, _: _ratio(c.result.rps, c.ideal_rps),
    "p50 ms": lambda c, _: _ms(c.result.p50_ms),
    "p99 ms": lambda c, _: _ms(c.result.p99_ms),
    "added p50 ms": _added_p50,
    "non-2xx": lambda c, _: _flag(c.result.non_2xx),
    "sock err": lambda c, _: _flag(c.result.errors),
    "proxy CPU ms/req": lambda c, _: _ms(c.proxy_cpu_ms),
    "up CPU ms/req": lambda c, _: _ms(c.upstream_cpu_ms),
    "redis CPU ms/req": lambda c, _: _ms(c.redis_cpu_ms),
    "peak RSS MB/worker": lambda c, _: _ms(c.peak_rss_mb),
    "answered 200": lambda c, _: f"{c.result.statuses.get(200, 0)} / {c.result.requests}",
    "wall s": lambda c, _: f"{c.result.duration_s:.1f}",
    "wall vs delay": lambda c, _: _ratio(c.result.duration_s, c.spec.delay_ms / 1000),
    "wall vs nginx": _vs("nginx", "duration_s"),
    "req/s vs direct": _vs("direct", "rps"),
    "req/s vs nginx": _vs("nginx", "rps"),
    "p50 vs direct": _vs("direct", "p50_ms"),
    "p50 vs nginx": _vs("nginx", "p50_ms"),
    "CPU vs naive": lambda c, peers: _ratio(c.proxy_cpu_ms, _naive_cpu(c, peers)),
}
_COMMON = ("target", "workers", "image", "conc")
_ERRORS = ("non-2xx", "sock err")
_CPU = ("proxy CPU ms/req", "up CPU ms/req", "redis CPU ms/req")
_VS = ("req/s vs direct", "req/s vs nginx")
LAYOUT: dict[Kind, tuple[str, tuple[str, ...]]] = {
    "fast": (
        "Zero-latency upstream: what the proxy costs",
        (
            *_COMMON,
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "added p50 ms",
            *_ERRORS,
            *_CPU,
            "CPU vs naive",
            *_VS,
            "p50 vs direct",
            "p50 vs nginx",
        ),
    ),
    "inflight": (
        "Slow upstream, many requests in flight: does throughput hold",
        (
            *_COMMON,
            "delay ms",
            "requests",
            "req/s",
            "vs ideal",
            "p50 ms",
            "p99 ms",
            *_ERRORS,
            *_CPU,
            *_VS,
        ),
    ),
    "memory": (
        "Many large uploads at once: memory",
        (
            *_COMMON,
            "delay ms",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            *_ERRORS,
            "proxy CPU ms/req",
            "peak RSS MB/worker",
        ),
    ),
    "flood": (
        "Zero latency, concurrency 1, while keyless connections flood the gateway",
        (*_COMMON, "requests", "req/s", "p50 ms", "p99 ms", *_ERRORS, "proxy CPU ms/req"),
    ),
    "slow": (
        "Image-model upstream: callers at once, each waiting the delay",
        (
            *_COMMON,
            "delay ms",
            "answered 200",
            "wall s",
            "wall vs delay",
            "wall vs nginx",
            "p50 ms",
            "p99 ms",
            *_ERRORS,
            *_CPU,
            "peak RSS MB/worker",
        ),
    ),
}


def table(cells: Sequence[Cell], kind: Kind, peers: Peers) -> list[str]:
    """One kind's section: a heading and its markdown table (nothing when it has no cells)."""
    chosen = [cell for cell in cells if cell.spec.kind == kind]
    if not chosen:
        return []
    title, names = LAYOUT[kind]
    lines = [f"### {title}", "", "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for cell in chosen:
        lines.append("| " + " | ".join(COLUMNS[name](cell, peers) for name in names) + " |")
    return [*lines, ""]


def problems(cells: Sequence[Cell]) -> list[str]:
    """One line per failed cell: its statuses and socket errors."""
    lines = []
    for cell in cells:
        if cell.failed:
            r, s = cell.result, cell.spec
            statuses = ", ".join(f"{code}: {n}" for code, n in sorted(r.statuses.items()))
            errors = ", ".join(f"{kind}: {n}" for kind, n in r.socket_errors.items() if n)
            line = (
                f"- {s.kind} {s.target} w{s.workers} {s.size} c={s.concurrency}: "
                f"statuses {{{statuses}}}; socket errors {{{errors or 'none'}}}"
            )
            if cell.cache_mismatch:
                seen = ", ".join(f"{value}: {n}" for value, n in sorted(r.cache.items()))
                line += f"; x-gateway-cache {{{seen or 'none'}}}, expected {cell.expected_cache}"
            lines.append(line)
    return lines


def document(
    header: Sequence[str],
    cells: Sequence[Cell],
    goals: Sequence[str],
    extra: Sequence[str] = (),
) -> str:
    """The whole results.md: header lines, the goals, the tables, `extra` sections (the
    instruction counts, the hashes), and the problems if any."""
    peers = Peers(cells)
    parts = ["# Benchmark results", "", *header, ""]
    if goals:
        parts += ["### Goals of the performance issue", "", *goals, ""]
    for kind in LAYOUT:
        parts += table(cells, kind, peers)
    parts += extra
    failed = problems(cells)
    if failed:
        parts += ["## ⚠ Cells with errors (their numbers are not clean)", "", *failed, ""]
    return "\n".join(parts)
