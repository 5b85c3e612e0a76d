"""The targets of the performance issue, checked against the cells of one run.

Each goal becomes rows of PASS / FAIL (or `—` when its cells were not measured), for the
full cache-miss path (`gateway`) unless it says otherwise:

- slow upstream, many in flight, first worker count: req/s >= 0.9 x ideal (conc / delay) at
  each in-flight size, and CPU per request <= 1.5 x the zero-latency concurrency-1 figure;
- zero latency, concurrency 1: CPU per request <= 1.2 ms at 50k, 2.5 ms at 1m, 6 ms at 3.9m;
  added p50 (gateway p50 - direct p50) <= 1.2 x that CPU; the gateway's p99 <= 2 x its p50;
- a cache hit (`gateway-hit`) at 1m, concurrency 1: p50 <= 1.5 ms end to end;
- every other worker count at each concurrency above 1: req/s >= 1.7 x the first count's
  (the issue's "--workers 2 at concurrency 32: >= 1.7x one worker");
- the memory cell: peak RSS of every worker <= 350 MB, and no request failed;
- every gateway start: /readyz answering 200 within 1.5 s of the spawn;
- the slow cells (issue 15: C callers at once against a 20 s upstream): every caller
  answered 200, wall time <= 1.2 x nginx's in the same cell, peak RSS <= 400 MB, CPU per
  request <= 1.2 x the zero-latency concurrency-1 figure of the same size;
- the flood cell: a valid caller's p99 <= 2 x its p99 in the same cell without the flood.

Next to the gateway's figure, each row shows the same measure of the `stack` target
(bench/stack.py: the libraries the gateway is built on doing only a miss's I/O) where
it was measured: what the goal would read if the gateway's own code cost nothing.

Timing goals live here, in the bench, never in a unit test.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bench.report import Cell
from bench.session import Startup

CPU_LIMIT_MS = {"50k": 1.2, "1m": 2.5, "3.9m": 6.0}
INFLIGHT_RATIO, INFLIGHT_CPU = 0.9, 1.5
ADDED_P50_PER_CPU, P99_PER_P50 = 1.2, 2.0
HIT_P50_MS, HIT_SIZE = 1.5, "1m"
WORKERS_SPEEDUP = 1.7
RSS_LIMIT_MB = 350.0
STARTUP_LIMIT_S = 1.5
SLOW_WALL_VS_NGINX, SLOW_RSS_MB, SLOW_CPU = 1.2, 400.0, 1.2
FLOOD_P99 = 2.0

Row = tuple[str, str, str, str, str, bool | None]  # goal, cell, measured, stack, limit, passed
Check = tuple[str, bool]  # what a cell measured, and whether that meets the goal


def _find(cells: Iterable[Cell], **where: object) -> Cell | None:
    for cell in cells:
        if all(getattr(cell.spec, name) == value for name, value in where.items()):
            return cell
    return None


def _peer(cells: Sequence[Cell], cell: Cell, target: str, **changes: object) -> Cell | None:
    """The cell of `target` measured like `cell` (but for `changes`); any worker count."""
    s = cell.spec
    where = {"kind": s.kind, "size": s.size, "concurrency": s.concurrency, **changes}
    return _find(cells, target=target, **where)


def _stack(cells: Sequence[Cell], cell: Cell) -> Cell | None:
    """The `stack` cell measured like `cell`, if it ran clean."""
    stack = _peer(cells, cell, "stack")
    return None if stack is None or stack.failed else stack


def _shown(check: Check | None) -> str:
    return "—" if check is None else check[0]


def _vs_ideal(cell: Cell) -> Check:
    ideal, rps = cell.ideal_rps or 0.0, cell.result.rps
    return f"{rps / ideal:.2f}x", rps >= INFLIGHT_RATIO * ideal and not cell.failed


def _cpu_vs_c1(cells: Sequence[Cell], cell: Cell) -> Check | None:
    base = _peer(cells, cell, cell.spec.target, kind="fast", concurrency=1)
    if not base or not base.proxy_cpu_ms or cell.proxy_cpu_ms is None:
        return None
    ratio = cell.proxy_cpu_ms / base.proxy_cpu_ms
    return f"{cell.proxy_cpu_ms:.2f} ms = {ratio:.2f}x", ratio <= INFLIGHT_CPU


def _inflight(cells: Sequence[Cell], workers: int) -> list[Row]:
    rows: list[Row] = []
    for cell in cells:
        s = cell.spec
        if s.kind != "inflight" or s.target != "gateway" or s.workers != workers:
            continue
        where = f"{s.size} c{s.concurrency} {s.delay_ms:g} ms"
        stack = _stack(cells, cell)
        measured, ok = _vs_ideal(cell)
        shown = _shown(_vs_ideal(stack) if stack else None)
        rows.append(
            ("in flight: req/s vs ideal", where, measured, shown, f">= {INFLIGHT_RATIO}x", ok)
        )
        cpu = _cpu_vs_c1(cells, cell)
        if cpu is not None:
            shown = _shown(_cpu_vs_c1(cells, stack) if stack else None)
            rows.append(
                ("in flight: CPU/req vs c1", where, cpu[0], shown, f"<= {INFLIGHT_CPU}x", cpu[1])
            )
    return rows


def _single_checks(cells: Sequence[Cell], cell: Cell) -> list[tuple[str, str, Check]]:
    """The concurrency-1 goals for one cell: (goal, limit, check), in the table's order."""
    s, r = cell.spec, cell.result
    cpu = cell.proxy_cpu_ms or 0.0
    checks: list[tuple[str, str, Check]] = []
    limit = CPU_LIMIT_MS.get(s.size)
    if limit is not None:
        checks.append(("c1: CPU/req", f"<= {limit} ms", (f"{cpu:.2f} ms", cpu <= limit)))
    direct = _peer(cells, cell, "direct")
    if direct:
        added = r.p50_ms - direct.result.p50_ms
        bound = f"<= {ADDED_P50_PER_CPU} x its CPU/req"
        checks.append(
            (
                "c1: added p50 vs CPU/req",
                bound,
                (f"{added:.2f} ms", added <= ADDED_P50_PER_CPU * cpu),
            )
        )
    bound = f"<= {P99_PER_P50} x its p50"
    checks.append(
        ("c1: p99 vs p50", bound, (f"{r.p99_ms:.2f} ms", r.p99_ms <= P99_PER_P50 * r.p50_ms))
    )
    return checks


def _single(cells: Sequence[Cell], workers: int) -> list[Row]:
    rows: list[Row] = []
    for cell in cells:
        s = cell.spec
        if s.kind != "fast" or s.target != "gateway" or s.workers != workers:
            continue
        if s.concurrency != 1 or cell.proxy_cpu_ms is None:
            continue
        stack = _stack(cells, cell)
        stacked = (
            dict((goal, check) for goal, _, check in _single_checks(cells, stack)) if stack else {}
        )
        for goal, limit, check in _single_checks(cells, cell):
            rows.append(
                (goal, f"{s.size} c1", check[0], _shown(stacked.get(goal)), limit, check[1])
            )
    return rows


def _hit(cells: Sequence[Cell], workers: int) -> list[Row]:
    cell = _find(
        cells, kind="fast", target="gateway-hit", workers=workers, size=HIT_SIZE, concurrency=1
    )
    if cell is None:
        where, limit = f"{HIT_SIZE} c1", f"<= {HIT_P50_MS} ms"
        return [("cache hit: p50", where, "not measured", "—", limit, None)]
    p50 = cell.result.p50_ms
    return [
        (
            "cache hit: p50",
            f"{HIT_SIZE} c1",
            f"{p50:.2f} ms",
            "—",
            f"<= {HIT_P50_MS} ms",
            p50 <= HIT_P50_MS and not cell.failed,
        )
    ]


def _workers(cells: Sequence[Cell], first: int) -> list[Row]:
    rows: list[Row] = []
    for cell in cells:
        s = cell.spec
        if s.kind != "fast" or s.target != "gateway" or s.workers == first:
            continue
        base = _find(
            cells,
            kind="fast",
            target="gateway",
            workers=first,
            size=s.size,
            concurrency=s.concurrency,
        )
        if base and base.result.rps:
            ratio = cell.result.rps / base.result.rps
            rows.append(
                (
                    f"{s.workers} workers vs {first}",
                    f"{s.size} c{s.concurrency}",
                    f"{ratio:.2f}x",
                    "—",
                    f">= {WORKERS_SPEEDUP}x",
                    ratio >= WORKERS_SPEEDUP,
                )
            )
    return rows


def _memory(cells: Sequence[Cell]) -> list[Row]:
    rows: list[Row] = []
    for cell in cells:
        s = cell.spec
        if s.kind != "memory" or cell.peak_rss_mb is None:
            continue
        where = f"{s.concurrency} x {s.size}, {s.workers} worker(s)"
        rows.append(
            (
                "memory: peak RSS per worker",
                where,
                f"{cell.peak_rss_mb:.0f} MB",
                "—",
                f"<= {RSS_LIMIT_MB:.0f} MB",
                cell.peak_rss_mb <= RSS_LIMIT_MB,
            )
        )
        failed = cell.result.non_2xx + cell.result.errors
        rows.append(("memory: failed requests", where, str(failed), "—", "0", not cell.failed))
    return rows


def _slow_rows(cells: Sequence[Cell], cell: Cell) -> list[Row]:
    s, r = cell.spec, cell.result
    where = f"{s.concurrency} x {s.size}, {s.delay_ms / 1000:g} s"
    answered = r.statuses.get(200, 0)
    rows: list[Row] = [
        ("slow: answered 200", where, f"{answered} / {r.requests}", "—", "all", not cell.failed)
    ]
    nginx = _peer(cells, cell, "nginx")
    if nginx is not None and nginx.result.duration_s:
        ratio = r.duration_s / nginx.result.duration_s
        wall = f"{r.duration_s:.1f} s = {ratio:.2f}x"
        rows.append(
            ("slow: wall vs nginx", where, wall, "—", "<= 1.2x", ratio <= SLOW_WALL_VS_NGINX)
        )
    if cell.peak_rss_mb is not None:
        rss_ok = cell.peak_rss_mb <= SLOW_RSS_MB
        peak = f"{cell.peak_rss_mb:.0f} MB"
        rows.append(("slow: peak RSS per worker", where, peak, "—", "<= 400 MB", rss_ok))
    base = _peer(cells, cell, cell.spec.target, kind="fast", concurrency=1, delay_ms=0.0)
    if base and base.proxy_cpu_ms and cell.proxy_cpu_ms is not None:
        ratio = cell.proxy_cpu_ms / base.proxy_cpu_ms
        cpu = f"{cell.proxy_cpu_ms:.2f} ms = {ratio:.2f}x"
        rows.append(("slow: CPU/req vs c1", where, cpu, "—", "<= 1.2x", ratio <= SLOW_CPU))
    return rows


def _slow(cells: Sequence[Cell]) -> list[Row]:
    rows: list[Row] = []
    for cell in cells:
        if cell.spec.kind == "slow" and cell.spec.target == "gateway":
            rows += _slow_rows(cells, cell)
    return rows


def _flood(cells: Sequence[Cell]) -> list[Row]:
    rows: list[Row] = []
    for cell in cells:
        if cell.spec.kind != "flood":
            continue
        calm = _peer(cells, cell, cell.spec.target, kind="fast", workers=cell.spec.workers)
        if calm is None or not calm.result.p99_ms:
            continue
        ratio = cell.result.p99_ms / calm.result.p99_ms
        measured = f"{cell.result.p99_ms:.2f} / {calm.result.p99_ms:.2f} ms = {ratio:.2f}x"
        where = f"{cell.spec.size} c1, {cell.spec.target}"
        passed = ratio <= FLOOD_P99 and not cell.failed
        rows.append(("flood: p99 vs without", where, measured, "—", "<= 2x", passed))
    return rows


def evaluate(
    cells: Sequence[Cell], startups: Sequence[Startup], workers: Sequence[int]
) -> list[Row]:
    """Every goal's rows for this run."""
    first = workers[0]
    rows = [*_inflight(cells, first), *_single(cells, first), *_hit(cells, first)]
    rows += [*_workers(cells, first), *_memory(cells), *_slow(cells), *_flood(cells)]
    rows += [
        (
            "start-up to /readyz 200",
            f"{s.workers} worker(s)",
            f"{s.seconds:.2f} s",
            "—",
            f"<= {STARTUP_LIMIT_S} s",
            s.seconds <= STARTUP_LIMIT_S,
        )
        for s in startups
    ]
    return rows


def goals_table(rows: Sequence[Row]) -> list[str]:
    """The goals as a markdown table, PASS / FAIL / — per row."""
    lines = [
        "| goal | cell | measured | the stack alone | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for goal, where, measured, stack, limit, passed in rows:
        verdict = "—" if passed is None else ("PASS" if passed else "**FAIL**")
        lines.append(f"| {goal} | {where} | {measured} | {stack} | {limit} | {verdict} |")
    return lines
