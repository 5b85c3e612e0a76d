"""Drive one benchmark cell with wrk and read its exact numbers.

The Lua script (bench/wrk.lua) reads the prebuilt body in `init`, counts every response
status and every value of the gateway's `x-gateway-cache` answer header, and its `done`
hook prints one `BENCH_RESULT {json}` line: the request count, the p50/p99 latency in
microseconds from wrk's full histogram, socket errors, and the status and cache counts.
That is exact where wrk's `--latency` text is rounded ("1.23ms", "4.56k"); the text is
still requested and kept in each cell's log for a human to read.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

SCRIPT = Path(__file__).with_name("wrk.lua")
UNIQUE_SCRIPT = Path(__file__).with_name("wrk_unique.lua")
MARKER = "BENCH_RESULT "


class WrkMissing(RuntimeError):
    """wrk is not installed."""


class WrkResult(NamedTuple):
    """One wrk run: counts, latency percentiles (ms), statuses and socket errors."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]
    socket_errors: dict[str, int]
    cache: dict[str, int]  # x-gateway-cache value -> responses; empty when not the gateway

    @property
    def rps(self) -> float:
        """Completed responses per second (any status)."""
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def non_2xx(self) -> int:
        """Responses whose status is not 2xx."""
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300)

    @property
    def errors(self) -> int:
        """Socket-level failures: connect, read, write errors and timeouts."""
        return sum(self.socket_errors.values())


def find_wrk() -> str:
    """The wrk executable; raises `WrkMissing` with the install command."""
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing(
            "wrk is not on PATH. Install it (Debian/Ubuntu: `sudo apt-get install wrk`, "
            "macOS: `brew install wrk`) and run the bench again."
        )
    return path


def parse_output(stdout: str) -> WrkResult:
    """The `BENCH_RESULT` line of wrk's output; raises `ValueError` if it is missing."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            raw = json.loads(line[len(MARKER) :])
            return WrkResult(
                requests=raw["requests"],
                duration_s=raw["duration_us"] / 1e6,
                p50_ms=raw["p50_us"] / 1e3,
                p99_ms=raw["p99_us"] / 1e3,
                statuses={int(code): n for code, n in raw["statuses"].items()},
                socket_errors={k: raw[k] for k in ("connect", "read", "write", "timeout")},
                cache=dict(raw.get("cache", {})),
            )
    raise ValueError("wrk printed no BENCH_RESULT line:\n" + stdout[-2000:])


class Load(NamedTuple):
    """What to send: the URL, the body file, the key, the body's Content-Type, extra headers."""

    url: str
    body_path: Path
    key: str
    content_type: str
    headers: tuple[str, ...] = ()  # "Name: value" each, e.g. "Cache-Control: no-cache"
    unique_image: bool = False  # a distinct PNG in every request (wrk_unique.lua)


def run_wrk(
    wrk: str, load: Load, *, connections: int, seconds: float, timeout_s: float, log: Path | None
) -> WrkResult:
    """Run wrk for `seconds` with `connections` (on up to 2 threads); bounded in time."""
    threads = min(connections, 2)
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "--latency",
        "-s",
        str(UNIQUE_SCRIPT if load.unique_image else SCRIPT),
        load.url,
        "--",
    ]
    unique = (f"unique-image: {secrets.token_hex(6)}",) if load.unique_image else ()
    arguments = [str(load.body_path), load.key, load.content_type, *load.headers, *unique]
    done = subprocess.run(
        [*command, *arguments],
        capture_output=True,
        text=True,
        timeout=seconds + timeout_s + 30,
        check=False,
    )
    if log is not None:
        shown = [str(load.body_path), "<key>", "<content-type>", *(repr(h) for h in load.headers)]
        log.write_text(" ".join([*command, *shown]) + "\n" + done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    return parse_output(done.stdout)
