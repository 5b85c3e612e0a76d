"""`python -m bench.run`: the benchmark matrix (see bench/plan.py and bench/README.md).

Starts the fake upstream, nginx (if installed) and, for the gateway targets, a throwaway
Redis and the gateway on loopback; checks one request per target; runs wrk for every cell
(a short warm-up, then the measured run); checks the issue's goals; writes bench/results.md.
Exits 1 if any cell had a non-2xx answer, a socket error or an unexpected x-gateway-cache
value (or a smoke request failed), 2 if the bench could not run. A missed goal is reported
as FAIL in the results, not in the exit status: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import about, counts_report, hashes
from bench.counts import TARGETS as COUNT_TARGETS
from bench.counts import Count, Counter, find_valgrind
from bench.goals import evaluate, goals_table
from bench.images import BenchImage, build_image, parse_size
from bench.nginx import find_nginx
from bench.plan import TARGETS, Spec, build_plan
from bench.report import Cell, document
from bench.session import Session
from bench.wrk import WrkMissing, find_wrk

BENCH_DIR = Path(__file__).resolve().parent


def _csv(convert: Callable[[str], object]) -> Callable[[str], list[object]]:
    def comma_separated_list(text: str) -> list[object]:
        return [convert(item.strip()) for item in text.split(",") if item.strip()]

    return comma_separated_list


def _size_label(label: str) -> str:
    try:
        parse_size(label)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return label


def _add_arguments(add: Callable[..., object]) -> None:
    sizes = _csv(_size_label)
    add("--duration", type=int, default=5, help="measured seconds per cell (default 5)")
    add("--warmup", type=int, default=1, help="warm-up seconds per cell, 0 for none (default 1)")
    add("--sizes", type=sizes, default=["50k", "1m", "3.9m"], help="PNG sizes: 50k,1m,3.9m")
    add("--concurrency", type=_csv(int), default=[1, 32], help="zero-latency cells: 1,32")
    add("--targets", type=_csv(str), default=list(TARGETS), help=",".join(TARGETS))
    add("--workers", type=_csv(int), default=[1, 2], help="gateway worker counts: 1,2")
    add("--delay-ms", type=float, default=0.0, help="upstream delay of the zero-latency cells")
    add("--inflight", type=int, default=128, help="connections of the slow-upstream cells, 0: none")
    add("--inflight-delay-ms", type=float, default=200.0, help="slow upstream delay (200)")
    add("--inflight-sizes", type=sizes, default=["50k", "1m"], help="slow-upstream sizes: 50k,1m")
    add("--memory-uploads", type=int, default=200, help="uploads at once, memory cell, 0: none")
    add("--memory-size", type=_size_label, default="3.9m", help="memory cell size (3.9m)")
    add("--slow", type=int, default=1000, help="callers at once, slow cells, 0: none (1000)")
    add("--slow-delay-s", type=float, default=20.0, help="slow cells' upstream delay (20 s)")
    add("--slow-sizes", type=sizes, default=["50k", "1m"], help="slow cells' sizes: 50k,1m")
    add("--flood", type=int, default=1000, help="keyless connections, flood cell, 0: none")
    add("--counts", type=int, default=20, help="requests per instruction-count cell, 0: none")
    add("--counts-warmup", type=int, default=3, help="uncounted requests before each (3)")
    add(
        "--counts-copies",
        choices=("vector", "rep"),
        default="vector",
        help="glibc's copies under callgrind: its vector loops (default) or its own choice",
    )
    add("--tracing", action="store_true", help="gateway targets traced, exported over OTLP")
    add("--timeout", type=int, default=30, help="wrk per-request timeout, seconds (default 30)")
    add("--output", type=Path, default=BENCH_DIR / "results.md", help="default bench/results.md")
    add("--work-dir", type=Path, default=BENCH_DIR / ".work", help="bodies, configs, logs")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; see bench/README.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    _add_arguments(parser.add_argument)
    args = parser.parse_args(argv)
    if not args.sizes or not args.workers:
        parser.error("--sizes and --workers need at least one value each")
    if not args.targets or set(args.targets) - set(TARGETS):
        parser.error(f"--targets: choose from {', '.join(TARGETS)}")
    if args.duration < 1 or args.warmup < 0 or min(args.concurrency, default=0) < 1:
        parser.error("--duration and --concurrency must be at least 1, --warmup at least 0")
    if min(args.workers) < 1 or min(args.inflight, args.memory_uploads, args.slow, args.flood) < 0:
        parser.error("--workers must be at least 1, --inflight, --memory-uploads, --slow >= 0")
    return args


def prepare_images(labels: Sequence[str], work: Path) -> dict[str, BenchImage]:
    """Build every test image and write its request body into the work directory."""
    built = {}
    for label in dict.fromkeys(labels):
        image = build_image(label)
        (work / f"body-{label}.bin").write_bytes(image.body)
        print(f"image {label}: {len(image.png):,} B PNG, {len(image.body):,} B body", flush=True)
        built[label] = image
    return built


def _print(cell: Cell) -> None:
    r, s = cell.result, cell.spec
    cache = " ".join(f"{value}:{n}" for value, n in sorted(r.cache.items()))
    cpu = f"  cpu {cell.proxy_cpu_ms:.2f} ms/req" if cell.proxy_cpu_ms is not None else ""
    rss = f"  peak RSS {cell.peak_rss_mb:.0f} MB" if cell.peak_rss_mb is not None else ""
    print(
        f"{s.kind:8} {s.target:11} w{s.workers} {s.size:>5} c={s.concurrency:<3} "
        f"d={s.delay_ms:<4g} {r.rps:8.1f} req/s  p50 {r.p50_ms:8.2f}  p99 {r.p99_ms:8.2f}"
        f"{cpu}{rss}  non-2xx {r.non_2xx} sock err {r.errors}"
        f"{'  cache ' + cache if cache else ''}{'  <-- ERRORS' if cell.failed else ''}",
        flush=True,
    )


def _plan(args: argparse.Namespace, nginx: str | None) -> tuple[list[Spec], list[str]]:
    notes = []
    if "nginx" in args.targets and nginx is None:
        args.targets = [t for t in args.targets if t != "nginx"]
        notes.append("nginx is not installed: its cells and ratios are left out")
    return build_plan(args), notes


def _count(
    args: argparse.Namespace, session: Session, nginx: str | None, notes: list[str]
) -> list[Count]:
    """The instruction-count cells (bench/counts.py), after the matrix."""
    targets = [t for t in args.targets if t in COUNT_TARGETS]
    valgrind = find_valgrind()
    if not args.counts or not targets:
        return []
    if valgrind is None:
        notes.append("valgrind (callgrind) is not installed: no instruction counts")
        return []
    session.upstream_delay(0.0)
    counter = Counter(
        valgrind,
        args.work_dir,
        session.ports["direct"],
        session.redis_url,
        nginx,
        vector_copies=args.counts_copies == "vector",
        tracing=args.tracing,
    )
    images = [session.images[size] for size in args.sizes]
    return counter.run(targets, images, args.counts, args.counts_warmup, report=_print_count)


def _print_count(count: Count) -> None:
    hashing, copies = count.per_request("hash") / 1e6, count.per_request("copies") / 1e6
    print(
        f"count    {count.target:11} {count.size:>5} {count.requests} req  "
        f"{count.per_request() / 1e6:8.2f} M instr/req"
        f"  hash {hashing:.2f} M  copies {copies:.2f} M",
        flush=True,
    )


def _extra(args: argparse.Namespace, counted: list[Count]) -> list[str]:
    """The sections after the matrix: instruction counts, and the hashes natively."""
    copies = "glibc's vector loops" if args.counts_copies == "vector" else "glibc chooses"
    speeds = hashes.table(hashes.measure())
    heading = "### Hashes of the upload natively, one thread (bench/hashes.py)"
    return [*counts_report.table(counted, copies), heading, "", *speeds, ""]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the matrix, write the results file, print it."""
    args = parse_args(argv)
    try:
        wrk = find_wrk()
    except WrkMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    args.work_dir.mkdir(parents=True, exist_ok=True)
    load_at_start = about.loadavg()
    nginx = find_nginx()
    plan, notes = _plan(args, nginx)
    labels = [*args.sizes, *args.inflight_sizes, args.memory_size, *args.slow_sizes]
    images = prepare_images(labels, args.work_dir)
    session = Session(args, wrk, nginx, images)
    cells: list[Cell] = []
    counted: list[Count] = []
    try:
        session.start({spec.target for spec in plan})
        for spec in plan:
            cells.append(session.cell(spec))
            _print(cells[-1])
        counted = _count(args, session, nginx, notes)
    finally:
        session.stop()
    rows = evaluate(cells, session.startups, args.workers)
    rows += counts_report.goal_rows(counted, cells, args.workers[0])
    header = about.header(args, list(images.values()), load_at_start, session.redis_url, notes)
    text = document(header, cells, goals_table(rows), _extra(args, counted))
    args.output.write_text(text)
    print("\n" + text)
    if any(cell.failed for cell in cells):
        print("\nbench: SOME CELLS HAD ERRORS, see the list under the table", file=sys.stderr)
        return 1
    if not session.smoked:
        print("\nbench: A SMOKE REQUEST FAILED, see its message above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
