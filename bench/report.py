"""The results: one row per cell, a markdown table with ratios to `direct`, and problems.

A cell with any non-2xx answer or socket error is never folded silently into the numbers:
its count is shown in bold and listed under the table with its status codes. So is a
gateway cell where any answer's `x-gateway-cache` is not the one its target measures
(e.g. a MISS in the cache-hit target).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.wrk import WrkResult

COLUMNS = (
    "target",
    "image",
    "conc",
    "requests",
    "req/s",
    "p50 ms",
    "p99 ms",
    "non-2xx",
    "sock err",
    "gw CPU ms/req",
    "up CPU ms/req",
    "redis CPU ms/req",
    "req/s vs direct",
    "p50 vs direct",
)


@dataclass(frozen=True)
class Cell:
    """One measured cell of the matrix."""

    target: str
    image: str
    png_bytes: int
    concurrency: int
    result: WrkResult
    gateway_cpu_ms: float | None  # per request; None when the gateway was not in the path
    upstream_cpu_ms: float
    redis_cpu_ms: float | None = None  # per request; None when no Redis was in the path
    expected_cache: str | None = None  # the x-gateway-cache value every answer must carry

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


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "—"


def _flag(count: int) -> str:
    return f"**{count} ⚠**" if count else "0"


def _row(cell: Cell, direct: Cell | None) -> list[str]:
    r = cell.result
    return [
        cell.target,
        f"{cell.image} ({cell.png_bytes / 1e6:.2f} MB)",
        str(cell.concurrency),
        str(r.requests),
        f"{r.rps:.1f}",
        _ms(r.p50_ms),
        _ms(r.p99_ms),
        _flag(r.non_2xx),
        _flag(r.errors),
        _ms(cell.gateway_cpu_ms),
        _ms(cell.upstream_cpu_ms),
        _ms(cell.redis_cpu_ms),
        _ratio(r.rps, direct.result.rps if direct and cell is not direct else None),
        _ratio(r.p50_ms, direct.result.p50_ms if direct and cell is not direct else None),
    ]


def table(cells: Sequence[Cell]) -> str:
    """The markdown table; gateway rows get ratios to the direct cell of the same image/conc."""
    direct = {(c.image, c.concurrency): c for c in cells if c.target == "direct"}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for cell in cells:
        row = _row(cell, direct.get((cell.image, cell.concurrency)))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def problems(cells: Sequence[Cell]) -> list[str]:
    """One line per failed cell: its statuses and socket errors."""
    lines = []
    for cell in cells:
        if cell.failed:
            r = cell.result
            statuses = ", ".join(f"{code}: {n}" for code, n in sorted(r.statuses.items()))
            errors = ", ".join(f"{kind}: {n}" for kind, n in r.socket_errors.items() if n)
            line = (
                f"- {cell.target} {cell.image} c={cell.concurrency}: "
                f"statuses {{{statuses}}}; socket errors {{{errors or 'none'}}}"
            )
            if cell.cache_mismatch:
                seen = ", ".join(f"{value}: {n}" for value, n in sorted(r.cache.items()))
                line += f"; x-gateway-cache {{{seen or 'none'}}}, expected {cell.expected_cache}"
            lines.append(line)
    return lines


def document(header: Sequence[str], cells: Sequence[Cell]) -> str:
    """The whole results.md: header lines, the table, and the problems if any."""
    parts = ["# Benchmark results", "", *header, "", table(cells), ""]
    failed = problems(cells)
    if failed:
        parts += ["## ⚠ Cells with errors (their numbers are not clean)", "", *failed, ""]
    return "\n".join(parts)
