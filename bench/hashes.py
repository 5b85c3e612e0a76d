"""`python -m bench.hashes`: each candidate hash of the upload, natively on this core.

The instruction counts (bench/counts.py) cannot weigh a hash fairly: valgrind's virtual CPU
has no SHA extensions and no AVX-512, so SHA-256 and BLAKE3 run other code there than
here. This measures them on the real CPU, one thread, in CPU time: the whole 4 MB buffer
at once, and fed in 64 KiB pieces as the gateway feeds the upload while it arrives. The
best of `--rounds` rounds of `--seconds` each, since other work on the box only ever slows
a round down.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import blake3

BUFFER = bytes(range(256)) * (4_000_000 // 256)
PIECE = 64 * 1024


class _Hash(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...

    def digest(self) -> bytes: ...


HASHES: dict[str, Callable[[], _Hash]] = {
    "sha256 (hashlib, OpenSSL)": hashlib.sha256,
    "blake2b (hashlib)": hashlib.blake2b,
    "blake3 (blake3, one thread)": lambda: blake3.blake3(max_threads=1),
}


class Speed(NamedTuple):
    """One hash's speed on this core: MB (10^6 bytes) per CPU second."""

    name: str
    whole_mb_s: float
    pieces_mb_s: float

    @property
    def ms_per_mb(self) -> float:
        """CPU milliseconds per MB, fed in pieces."""
        return 1000.0 / self.pieces_mb_s if self.pieces_mb_s else 0.0


def _rate(work: Callable[[], None], seconds: float) -> float:
    """MB of `BUFFER` per CPU second `work` (which hashes it once) achieves."""
    started, done = time.process_time(), 0
    while time.process_time() - started < seconds:
        work()
        done += 1
    return done * len(BUFFER) / 1e6 / (time.process_time() - started)


def _whole(make: Callable[[], _Hash]) -> Callable[[], None]:
    def work() -> None:
        hasher = make()
        hasher.update(BUFFER)
        hasher.digest()

    return work


def _pieces(make: Callable[[], _Hash]) -> Callable[[], None]:
    view = memoryview(BUFFER)

    def work() -> None:
        hasher = make()
        for start in range(0, len(view), PIECE):
            hasher.update(view[start : start + PIECE])
        hasher.digest()

    return work


def measure(seconds: float = 0.5, rounds: int = 3) -> list[Speed]:
    """Every hash's best rate over `rounds`, whole and in pieces."""
    return [
        Speed(
            name,
            max(_rate(_whole(make), seconds) for _ in range(rounds)),
            max(_rate(_pieces(make), seconds) for _ in range(rounds)),
        )
        for name, make in HASHES.items()
    ]


def table(speeds: Sequence[Speed]) -> list[str]:
    """The speeds as a markdown table, with each one's ratio to SHA-256."""
    base = speeds[0].pieces_mb_s if speeds else 0.0
    lines = [
        "| hash | MB/s, 4 MB at once | MB/s, 64 KiB pieces | CPU ms per MB | vs sha256 |",
        "|---|---|---|---|---|",
    ]
    for speed in speeds:
        ratio = f"{speed.pieces_mb_s / base:.2f}x" if base else "—"
        lines.append(
            f"| {speed.name} | {speed.whole_mb_s:.0f} | {speed.pieces_mb_s:.0f} | "
            f"{speed.ms_per_mb:.3f} | {ratio} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.hashes", description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5, help="per round (0.5)")
    parser.add_argument("--rounds", type=int, default=3, help="the best of (3)")
    args = parser.parse_args(argv)
    print("\n".join(table(measure(args.seconds, args.rounds))))


if __name__ == "__main__":
    main()
