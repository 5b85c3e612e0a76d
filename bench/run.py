"""`python -m bench.run`: the benchmark matrix, targets x image sizes x concurrency.

Starts the fake upstream and the gateway on loopback, checks one request per target,
then runs wrk for every cell (a short warm-up, then the measured run) and writes
bench/results.md. Exits 1 if any cell had a non-2xx answer or a socket error, 2 if the
bench could not run.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench import procs
from bench.images import BenchImage, build_image, parse_size
from bench.report import Cell, document
from bench.wrk import Load, WrkMissing, find_wrk, run_wrk

BENCH_DIR = Path(__file__).resolve().parent
TARGETS = ("direct", "gateway")
PATH = "/v1/images/variations"


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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; see bench/README.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    add = parser.add_argument
    add("--duration", type=int, default=5, help="measured seconds per cell (default 5)")
    add("--warmup", type=int, default=1, help="warm-up seconds per cell, 0 for none (default 1)")
    add(
        "--sizes",
        type=_csv(_size_label),
        default=["50k", "1m", "3.9m"],
        help="PNG sizes: 50k,1m,3.9m",
    )
    add("--concurrency", type=_csv(int), default=[1, 32], help="connections per cell: 1,32")
    add("--targets", type=_csv(str), default=list(TARGETS), help="direct,gateway")
    add("--delay-ms", type=float, default=0.0, help="fake upstream delay per answer (default 0)")
    add("--timeout", type=int, default=30, help="wrk per-request timeout, seconds (default 30)")
    add("--output", type=Path, default=BENCH_DIR / "results.md", help="default bench/results.md")
    add("--work-dir", type=Path, default=BENCH_DIR / ".work", help="bodies, config, wrk logs")
    args = parser.parse_args(argv)
    if not args.sizes:
        parser.error("--sizes: give at least one size, e.g. 50k,1m,3.9m")
    if not args.targets or set(args.targets) - set(TARGETS):
        parser.error(f"--targets: choose from {', '.join(TARGETS)}")
    if args.duration < 1 or args.warmup < 0 or min(args.concurrency, default=0) < 1:
        parser.error("--duration and --concurrency must be at least 1, --warmup at least 0")
    return args


def curl_command(load: Load) -> str:
    """A curl command line that sends exactly the benchmark's request once."""
    return (
        f"curl -sS -i {load.url} -H 'Authorization: Bearer {load.key}' "
        f"-H 'Content-Type: {load.content_type}' --data-binary @{load.body_path}"
    )


def smoke(target: str, load: Load) -> bool:
    """One request before measuring; prints the answer, and a curl to reproduce a failure."""
    response = httpx.post(
        load.url,
        content=load.body_path.read_bytes(),
        headers={"authorization": f"Bearer {load.key}", "content-type": load.content_type},
        timeout=30,
    )
    if response.status_code == 200:
        print(f"smoke {target}: 200 {response.text[:100]}", flush=True)
        return True
    print(f"\n!!! smoke {target}: HTTP {response.status_code}: {response.text[:500]}", flush=True)
    print(f"!!! reproduce with: {curl_command(load)}\n", flush=True)
    return False


def _machine() -> str:
    model = "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout or wrk.stderr).split(" [")[0]
    return (
        f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {wrk_version}"
    )


def header(args: argparse.Namespace, bench_images: Sequence[BenchImage], loadavg: str) -> list[str]:
    """The lines above the table: when, where, with what settings, and how busy the box was."""
    sizes = "; ".join(
        f"{i.label}: {len(i.png):,} B PNG, {len(i.body):,} B body" for i in bench_images
    )
    command = " ".join(sys.argv[1:]) or "(defaults)"
    return [
        f"- run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, arguments: `{command}`",
        f"- machine: {_machine()}; everything on one box over loopback",
        f"- load average at the start (other work on the box skews every number): {loadavg}",
        f"- cells: {args.warmup}s warm-up + {args.duration}s measured, "
        f"fake upstream delay {args.delay_ms:g} ms",
        f"- images: {sizes}",
    ]


class Bench:
    """The running processes and what every cell needs to be measured."""

    def __init__(self, args: argparse.Namespace, wrk: str) -> None:
        self.args, self.wrk = args, wrk
        self.upstream: procs.Popen | None = None
        self.gateway: procs.Popen | None = None
        self.ports: dict[str, int] = {}

    def start(self) -> None:
        """Start the fake upstream, and the gateway if it is a target."""
        work = self.args.work_dir
        self.ports["direct"] = procs.free_port()
        self.upstream = procs.start_upstream(self.ports["direct"], self.args.delay_ms, work)
        if "gateway" in self.args.targets:
            self.ports["gateway"] = procs.free_port()
            self.gateway = procs.start_gateway(self.ports["gateway"], self.ports["direct"], work)

    def stop(self) -> None:
        """Stop whatever was started."""
        procs.stop(self.gateway)
        procs.stop(self.upstream)

    def load(self, target: str, image: BenchImage) -> Load:
        """What wrk sends to `target` for `image`."""
        body = self.args.work_dir / f"body-{image.label}.bin"
        url = f"http://127.0.0.1:{self.ports[target]}{PATH}"
        key = procs.BENCH_KEY if target == "gateway" else procs.UPSTREAM_KEY
        return Load(url, body, key, image.content_type)

    def _cpu(self) -> tuple[float, float]:
        gateway = procs.cpu_seconds(self.gateway.pid) if self.gateway else 0.0
        assert self.upstream is not None
        return gateway, procs.cpu_seconds(self.upstream.pid)

    def cell(self, target: str, image: BenchImage, concurrency: int) -> Cell:
        """Warm up, then measure one cell with wrk and the CPU the processes spent on it."""
        load, args = self.load(target, image), self.args
        run = {"connections": concurrency, "timeout_s": args.timeout}
        if args.warmup:
            run_wrk(self.wrk, load, seconds=args.warmup, log=None, **run)
        log = args.work_dir / f"wrk-{target}-{image.label}-c{concurrency}.log"
        before = self._cpu()
        result = run_wrk(self.wrk, load, seconds=args.duration, log=log, **run)
        after = self._cpu()
        per_request = 1000.0 / result.requests if result.requests else 0.0
        gateway_ms = (after[0] - before[0]) * per_request if target == "gateway" else None
        return Cell(
            target=target,
            image=image.label,
            png_bytes=len(image.png),
            concurrency=concurrency,
            result=result,
            gateway_cpu_ms=gateway_ms,
            upstream_cpu_ms=(after[1] - before[1]) * per_request,
        )


def prepare_images(labels: Sequence[str], work: Path) -> list[BenchImage]:
    """Build every test image and write its request body into the work directory."""
    built = []
    for label in labels:
        image = build_image(label)
        (work / f"body-{label}.bin").write_bytes(image.body)
        print(f"image {label}: {len(image.png):,} B PNG, {len(image.body):,} B body", flush=True)
        built.append(image)
    return built


def measure(bench: Bench, bench_images: Sequence[BenchImage]) -> list[Cell]:
    """Every cell of the matrix, image by image, concurrency by concurrency."""
    args, cells = bench.args, []
    for target in args.targets:
        smoke(target, bench.load(target, bench_images[0]))
    for image in bench_images:
        for concurrency in args.concurrency:
            for target in args.targets:
                cell = bench.cell(target, image, concurrency)
                r = cell.result
                flag = "  <-- ERRORS" if cell.failed else ""
                print(
                    f"{target:8} {image.label:>5} c={concurrency:<3} {r.rps:9.1f} req/s  "
                    f"p50 {r.p50_ms:8.2f} ms  p99 {r.p99_ms:8.2f} ms  "
                    f"non-2xx {r.non_2xx}  sock err {r.errors}{flag}",
                    flush=True,
                )
                cells.append(cell)
    return cells


def main(argv: Sequence[str] | None = None) -> int:
    """Run the matrix, write the results file, print the table."""
    args = parse_args(argv)
    try:
        wrk = find_wrk()
    except WrkMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    args.work_dir.mkdir(parents=True, exist_ok=True)
    loadavg = " ".join(f"{load:.2f}" for load in os.getloadavg())
    bench_images = prepare_images(args.sizes, args.work_dir)
    bench = Bench(args, wrk)
    try:
        bench.start()
        cells = measure(bench, bench_images)
    finally:
        bench.stop()
    text = document(header(args, bench_images, loadavg), cells)
    args.output.write_text(text)
    print("\n" + text)
    if any(cell.failed for cell in cells):
        print("\nbench: SOME CELLS HAD ERRORS, see the list under the table", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
