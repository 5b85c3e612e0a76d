"""What a refusal without a key costs: the gateway's CPU per refused connection, next to the
CPU of the Python client that sends them (the flood cell's `crowd.Flood`, on the same cores).

    .venv/bin/python -m bench.refusals [--connections 1000] [--seconds 10] [--rounds 3]

One gateway process (the bench's config, a throwaway Redis) and the flood alone, no valid
caller: each round reports the refusals answered, the gateway's CPU and the client's CPU
per refusal. Running it with `PYTHONPATH` pointing at another copy of `gateway/` measures
that copy (the header of `bench.run` names the code it imported; here, the first line).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

import gateway
from bench import procs
from bench.crowd import Flood

PATH = "/v1/images/variations"


def _round(
    port: int, gateway_pid: int, connections: int, seconds: float
) -> tuple[int, float, float]:
    """One flood of `seconds`: refusals, gateway CPU ms and client CPU ms per refusal."""
    client = psutil.Process()
    gateway_before, client_before = procs.cpu_seconds(gateway_pid), _cpu(client)
    with Flood(port, PATH, connections) as flood:
        time.sleep(seconds)
        refused = flood.refused
    gateway_ms = (procs.cpu_seconds(gateway_pid) - gateway_before) * 1000
    client_ms = (_cpu(client) - client_before) * 1000
    return refused, gateway_ms / max(refused, 1), client_ms / max(refused, 1)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rounds and print one line each, then the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"gateway code: {Path(gateway.__file__).parent}; load {psutil.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as work, procs.redis_server(from_env=False) as redis:
        port = procs.free_port()
        # Refusals never reach the upstream: any closed port will do.
        proc, _ = procs.launch_gateway(port, procs.free_port(), Path(work), redis_url=redis)
        try:
            for _ in range(args.rounds):
                rows.append(_round(port, proc.pid, args.connections, args.seconds))
                refused, gateway_ms, client_ms = rows[-1]
                print(f"refused {refused:6d}  gateway {gateway_ms:.3f}  client {client_ms:.3f} ms")
        finally:
            procs.stop(proc)
    gateway_ms = statistics.median(row[1] for row in rows)
    client_ms = statistics.median(row[2] for row in rows)
    print(f"median CPU per refusal: gateway {gateway_ms:.3f} ms, client {client_ms:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
