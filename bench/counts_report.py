"""Issue 27's results: the instruction-count cells as a table, and its goals checked
against them and against the CPU-time matrix of the same run."""

from __future__ import annotations

from collections.abc import Sequence

from bench.counts import Count, Part
from bench.goals import Row
from bench.report import Cell

CPU_SIZE = "1m"  # the CPU-time goal's cell
NAIVE_RATIO = 0.5


def _by(counts: Sequence[Count], target: str, size: str) -> Count | None:
    return next((c for c in counts if c.target == target and c.size == size), None)


def _m(value: float) -> str:
    return f"{value / 1e6:.2f}"


def _vs_naive(counts: Sequence[Count], count: Count, part: Part) -> str:
    naive = _by(counts, "naive", count.size)
    if naive is None or count is naive or not naive.per_request(part):
        return "—"
    ratio = count.per_request(part) / naive.per_request(part)
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x"


def table(counts: Sequence[Count], copies: str) -> list[str]:
    """The count cells as a markdown section (nothing when there are none)."""
    if not counts:
        return []
    lines = [
        "### Instructions per request (callgrind, the proxy process, concurrency 1)",
        "",
        f"Millions of instructions per request; copies counted as {copies} (see bench/counts.py).",
        "",
        "| target | image | requests | M instr/req | hash | copies | rest | vs naive "
        "| without hash vs naive |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in counts:
        rest = c.per_request() - c.per_request("hash") - c.per_request("copies")
        lines.append(
            f"| {c.target} | {c.size} ({c.png_bytes / 1e6:.2f} MB) | {c.requests} "
            f"| {_m(c.per_request())} | {_m(c.per_request('hash'))} "
            f"| {_m(c.per_request('copies'))} | {_m(rest)} | {_vs_naive(counts, c, 'all')} "
            f"| {_vs_naive(counts, c, 'no hash')} |"
        )
    return [*lines, ""]


def goal_rows(counts: Sequence[Count], cells: Sequence[Cell], workers: int) -> list[Row]:
    """Issue 27's goals: the miss at most half the naive pass-through's instructions per
    request at every counted size, and half its CPU per request at 1 MB in the same run."""
    rows: list[Row] = []
    for count in counts:
        naive = _by(counts, "naive", count.size)
        if count.target != "gateway" or naive is None or not naive.per_request():
            continue
        ratio = count.per_request() / naive.per_request()
        measured = f"{_m(count.per_request())} / {_m(naive.per_request())} M = {ratio:.2f}x"
        where = f"{count.size} c1"
        rows.append(
            (
                "instructions/req vs naive",
                where,
                measured,
                "—",
                f"<= {NAIVE_RATIO}x",
                ratio <= NAIVE_RATIO,
            )
        )
    miss = _cell(cells, "gateway", workers)
    naive_cell = _cell(cells, "naive", 1)
    if miss and naive_cell and miss.proxy_cpu_ms and naive_cell.proxy_cpu_ms:
        ratio = miss.proxy_cpu_ms / naive_cell.proxy_cpu_ms
        measured = f"{miss.proxy_cpu_ms:.2f} / {naive_cell.proxy_cpu_ms:.2f} ms = {ratio:.2f}x"
        rows.append(
            (
                "CPU/req vs naive",
                f"{CPU_SIZE} c1",
                measured,
                "—",
                f"<= {NAIVE_RATIO}x",
                ratio <= NAIVE_RATIO,
            )
        )
    return rows


def _cell(cells: Sequence[Cell], target: str, workers: int) -> Cell | None:
    for cell in cells:
        s = cell.spec
        same = (s.kind, s.target, s.size, s.concurrency) == ("fast", target, CPU_SIZE, 1)
        if same and (s.workers == workers or target == "naive"):
            return cell
    return None
