"""`python -m bench.run`: the benchmark matrix, targets x image sizes x concurrency.

Starts the fake upstream and (for the gateway targets) a throwaway Redis and the gateway
on loopback, checks one request per target, then runs wrk for every cell (a short
warm-up, then the measured run) and writes bench/results.md. Exits 1 if any cell had a
non-2xx answer, a socket error or an unexpected x-gateway-cache value (or a smoke request
failed), 2 if the bench could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
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
TARGETS = ("direct", "gateway", "gateway-hit")
PATH = "/v1/images/variations"
# The gateway targets share one gateway process; each expects this x-gateway-cache value on
# every answer. `gateway` sends Cache-Control: no-cache, so it skips the lookup but still
# reserves quota, calls upstream, stores the answer and settles: the whole miss path.
# `gateway-hit` sends the same request without it: after the first, every one is a hit.
EXPECTED_CACHE = {"gateway": "MISS", "gateway-hit": "HIT"}
EXTRA_HEADERS = {"gateway": ("Cache-Control: no-cache",)}
GATEWAY_CACHE = {"enabled": True}


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
    add("--targets", type=_csv(str), default=list(TARGETS), help="direct,gateway,gateway-hit")
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
    extra = "".join(f" -H '{header}'" for header in load.headers)
    return (
        f"curl -sS -i {load.url} -H 'Authorization: Bearer {load.key}' "
        f"-H 'Content-Type: {load.content_type}'{extra} --data-binary @{load.body_path}"
    )


def send_once(load: Load) -> httpx.Response:
    """The benchmark's request, once, with httpx."""
    headers = {"authorization": f"Bearer {load.key}", "content-type": load.content_type}
    for header in load.headers:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    return httpx.post(load.url, content=load.body_path.read_bytes(), headers=headers, timeout=30)


def smoke(target: str, load: Load) -> bool:
    """One request before measuring (two for `gateway-hit`, whose first may be the miss that
    fills the cache): 200 and the target's x-gateway-cache, else the answer and a curl."""
    response = send_once(load)
    expected = EXPECTED_CACHE.get(target)
    cache = response.headers.get("x-gateway-cache")
    if target == "gateway-hit" and response.status_code == 200 and cache != expected:
        print(f"smoke {target}: first answer x-gateway-cache {cache}, sending again", flush=True)
        response = send_once(load)
        cache = response.headers.get("x-gateway-cache")
    if response.status_code == 200 and cache == expected:
        shown = f" x-gateway-cache: {cache}" if expected else ""
        print(f"smoke {target}: 200{shown} {response.text[:100]}", flush=True)
        return True
    print(
        f"\n!!! smoke {target}: HTTP {response.status_code}, x-gateway-cache {cache} "
        f"(expected {expected}): {response.text[:500]}",
        flush=True,
    )
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


def _gateway_code() -> str:
    """Where the gateway's code comes from (PYTHONPATH can point at a snapshot), and its commit."""
    spec = importlib.util.find_spec("gateway")
    if spec is None or spec.origin is None:
        return "not importable"
    where = Path(spec.origin).parent
    git = ["git", "-C", str(where)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return f"`{where}` (not a git checkout)"
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True
    ).stdout.strip()
    return f"`{where}` at {head.stdout.strip()}" + (" with uncommitted changes" if dirty else "")


def _gateway_setup(redis_url: str) -> str:
    """How the gateway targets ran: the store, the quota rules, the cache, the headers."""
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    redis = " ".join(version.stdout.split()[:3]) or "redis-server"
    return (
        f"one gateway process; `REDIS_URL` = a throwaway {redis} at {redis_url} (quota "
        "store and cache store); quota rules user requests 1e9/minute and images 1e9/day, "
        "team usd 1e9/month; cache enabled. `gateway` sends `Cache-Control: no-cache` "
        "(every answer a stored MISS), `gateway-hit` does not (every answer a HIT)"
    )


def header(
    args: argparse.Namespace,
    bench_images: Sequence[BenchImage],
    loadavg: str,
    redis_url: str | None,
) -> list[str]:
    """The lines above the table: when, where, with what settings, and how busy the box was."""
    sizes = "; ".join(
        f"{i.label}: {len(i.png):,} B PNG, {len(i.body):,} B body" for i in bench_images
    )
    command = " ".join(sys.argv[1:]) or "(defaults)"
    lines = [
        f"- run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, arguments: `{command}`",
        f"- machine: {_machine()}; everything on one box over loopback",
        f"- load average at the start (other work on the box skews every number): {loadavg}",
        f"- cells: {args.warmup}s warm-up + {args.duration}s measured, "
        f"fake upstream delay {args.delay_ms:g} ms",
        f"- images: {sizes}",
    ]
    if redis_url:
        lines.append(f"- gateway code: {_gateway_code()}")
        lines.append(f"- gateway targets: {_gateway_setup(redis_url)}")
    return lines


class Bench:
    """The running processes and what every cell needs to be measured."""

    def __init__(self, args: argparse.Namespace, wrk: str) -> None:
        self.args, self.wrk = args, wrk
        self.upstream: procs.Popen | None = None
        self.gateway: procs.Popen | None = None
        self.redis_url: str | None = None
        self.redis_pid: int | None = None
        self.ports: dict[str, int] = {}
        self._exit = contextlib.ExitStack()

    def start(self) -> None:
        """Start the fake upstream, and a throwaway Redis and the gateway if one is a target.

        Never the Redis of $REDIS_URL: the bench must not write into a shared one.
        """
        work = self.args.work_dir
        self.ports["direct"] = procs.free_port()
        self.upstream = procs.start_upstream(self.ports["direct"], self.args.delay_ms, work)
        if set(EXPECTED_CACHE) & set(self.args.targets):
            self.redis_url = self._exit.enter_context(procs.redis_server(from_env=False))
            self.redis_pid = procs.child_pid("redis-server")
            gateway_port = procs.free_port()
            self.gateway = procs.start_gateway(
                gateway_port,
                self.ports["direct"],
                work,
                quotas=procs.UNREFUSING_QUOTAS,
                cache=GATEWAY_CACHE,
                redis_url=self.redis_url,
            )
            self.ports.update(dict.fromkeys(EXPECTED_CACHE, gateway_port))

    def stop(self) -> None:
        """Stop whatever was started."""
        procs.stop(self.gateway)
        procs.stop(self.upstream)
        self._exit.close()

    def load(self, target: str, image: BenchImage) -> Load:
        """What wrk sends to `target` for `image`."""
        body = self.args.work_dir / f"body-{image.label}.bin"
        url = f"http://127.0.0.1:{self.ports[target]}{PATH}"
        key = procs.BENCH_KEY if target in EXPECTED_CACHE else procs.UPSTREAM_KEY
        return Load(url, body, key, image.content_type, EXTRA_HEADERS.get(target, ()))

    def _cpu(self) -> tuple[float, float, float]:
        gateway = procs.cpu_seconds(self.gateway.pid) if self.gateway else 0.0
        redis = procs.cpu_seconds(self.redis_pid) if self.redis_pid else 0.0
        assert self.upstream is not None
        return gateway, procs.cpu_seconds(self.upstream.pid), redis

    def cell(self, target: str, image: BenchImage, concurrency: int) -> Cell:
        """Warm up, then measure one cell with wrk and the CPU the processes spent on it."""
        load, args = self.load(target, image), self.args
        run = {"connections": concurrency, "timeout_s": args.timeout}
        if target == "gateway-hit":  # fill the cache, so even without warm-up all are hits
            send_once(load)
        if args.warmup:
            run_wrk(self.wrk, load, seconds=args.warmup, log=None, **run)
        log = args.work_dir / f"wrk-{target}-{image.label}-c{concurrency}.log"
        before = self._cpu()
        result = run_wrk(self.wrk, load, seconds=args.duration, log=log, **run)
        after = self._cpu()
        per_request = 1000.0 / result.requests if result.requests else 0.0
        through_gateway = target in EXPECTED_CACHE
        gateway_ms = (after[0] - before[0]) * per_request if through_gateway else None
        redis_ms = (after[2] - before[2]) * per_request if through_gateway else None
        return Cell(
            target=target,
            image=image.label,
            png_bytes=len(image.png),
            concurrency=concurrency,
            result=result,
            gateway_cpu_ms=gateway_ms,
            upstream_cpu_ms=(after[1] - before[1]) * per_request,
            redis_cpu_ms=redis_ms,
            expected_cache=EXPECTED_CACHE.get(target),
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


def measure(bench: Bench, bench_images: Sequence[BenchImage]) -> tuple[list[Cell], bool]:
    """Every cell of the matrix, image by image, concurrency by concurrency; and whether
    every smoke request gave what its target expects."""
    args, cells = bench.args, []
    smoked = [smoke(target, bench.load(target, bench_images[0])) for target in args.targets]
    for image in bench_images:
        for concurrency in args.concurrency:
            for target in args.targets:
                cell = bench.cell(target, image, concurrency)
                r = cell.result
                flag = "  <-- ERRORS" if cell.failed else ""
                cache = " ".join(f"{value}:{n}" for value, n in sorted(r.cache.items()))
                print(
                    f"{target:11} {image.label:>5} c={concurrency:<3} {r.rps:9.1f} req/s  "
                    f"p50 {r.p50_ms:8.2f} ms  p99 {r.p99_ms:8.2f} ms  "
                    f"non-2xx {r.non_2xx}  sock err {r.errors}"
                    f"{'  cache ' + cache if cache else ''}{flag}",
                    flush=True,
                )
                cells.append(cell)
    return cells, all(smoked)


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
        cells, smoked = measure(bench, bench_images)
    finally:
        bench.stop()
    text = document(header(args, bench_images, loadavg, bench.redis_url), cells)
    args.output.write_text(text)
    print("\n" + text)
    if any(cell.failed for cell in cells):
        print("\nbench: SOME CELLS HAD ERRORS, see the list under the table", file=sys.stderr)
        return 1
    if not smoked:
        print("\nbench: A SMOKE REQUEST FAILED, see its message above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
