"""The lines above the tables: when, where, with what settings, and how busy the box was."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.images import BenchImage


def machine() -> str:
    """CPU model and count, OS, Python and wrk versions."""
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


def gateway_code() -> str:
    """Where the gateway's code comes from (PYTHONPATH can point at a snapshot), and its commit.

    Asked of a fresh interpreter outside the checkout, as the gateway process finds it: in
    this one, the current directory (the checkout) comes before PYTHONPATH.
    """
    found = subprocess.run(
        [sys.executable, "-c", "import gateway; print(gateway.__file__)"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    if found.returncode != 0:
        return "not importable"
    where = Path(found.stdout.strip()).parent
    git = ["git", "-C", str(where)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return f"`{where}` (not a git checkout)"
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True
    ).stdout.strip()
    return f"`{where}` at {head.stdout.strip()}" + (" with uncommitted changes" if dirty else "")


def gateway_setup(redis_url: str) -> str:
    """How the gateway targets ran: the store, the quota rules, the cache, the headers."""
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    redis = " ".join(version.stdout.split()[:3]) or "redis-server"
    return (
        f"`REDIS_URL` = a throwaway {redis} at {redis_url} (quota store and cache store); "
        "quota rules user requests 1e9/minute and images 1e9/day, team usd 1e9/month; cache "
        "enabled. `gateway` uploads a different image in every request (every answer a "
        "MISS, through the cache lookup), `gateway-nostore` too with `Cache-Control: no-store` "
        "(every answer a BYPASS: no hashing), `gateway-hit` the same one (every answer a HIT)"
    )


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, now."""
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def header(
    args: argparse.Namespace,
    images: Sequence[BenchImage],
    load_at_start: str,
    redis_url: str | None,
    notes: Sequence[str] = (),
) -> list[str]:
    """The header lines of results.md."""
    sizes = "; ".join(f"{i.label}: {len(i.png):,} B PNG, {len(i.body):,} B body" for i in images)
    command = " ".join(sys.argv[1:]) or "(defaults)"
    lines = [
        f"- run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, arguments: `{command}`",
        f"- machine: {machine()}; everything on one box over loopback",
        f"- load average (other work on the box skews every number): {load_at_start} at "
        f"the start, {loadavg()} at the end",
        f"- cells: {args.warmup}s warm-up + {args.duration}s measured",
        f"- images: {sizes}",
    ]
    if redis_url:
        lines.append(f"- gateway code: {gateway_code()}")
        lines.append(f"- gateway targets: {gateway_setup(redis_url)}")
        tracing = "on, every request, OTLP/HTTP to a loopback sink" if args.tracing else "off"
        lines.append(f"- gateway tracing (`--tracing`): {tracing}")
    return lines + [f"- {note}" for note in notes]
