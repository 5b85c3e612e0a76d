"""Budget alert latency: from the charge that crosses a threshold to the signed post's
arrival at a webhook receiver on loopback.

    .venv/bin/python -m bench.alerts [--crossings 200]

Each crossing is a fresh team whose pool of one image a day, with a 100 % threshold, is
spent by one request; the receiver notes when each post arrives. The ledger runs on the
in-process store (the Redis step's own cost is `bench.quota`'s), the sender as it runs in
the gateway (its queue, its HTTP client, the signature).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gateway.admin.alerting import AlertOps
from gateway.admin.operations import Actor, AdminOps
from gateway.admin.state import RuntimeState
from gateway.admin.store import MemoryAdminStore
from gateway.auth.base import Identity
from gateway.notify.sender import Notifier
from gateway.quota.counters import request_cost
from gateway.quota.ledger import QuotaLedger
from gateway.settings.config import NotificationsConfig, parse_config
from gateway.store.memory import MemoryStore

ACTOR = Actor("bench", "req_bench", None)


def _receiver(arrived: dict[str, float]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            arrived[self.headers["x-gateway-delivery"]] = time.perf_counter()
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def measure(crossings: int) -> list[float]:
    """Milliseconds from each crossing charge to its post's arrival."""
    arrived: dict[str, float] = {}
    server = _receiver(arrived)
    teams = {f"t{i}": [{"unit": "images", "limit": 1, "window": "day"}] for i in range(crossings)}
    quotas = parse_config({"quotas": {"teams": teams}}).quotas
    store = MemoryStore()
    state = RuntimeState(MemoryAdminStore(lambda: store.books), quotas)
    alerts = AlertOps(AdminOps(state, frozenset(teams)))
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    hook = (await alerts.create_webhook({"name": "bench", "url": url}, ACTOR)).webhook
    for team in teams:
        await alerts.set_alerts("team", team, {"thresholds": [100], "webhooks": [hook.id]}, ACTOR)
    notifier = Notifier(state, NotificationsConfig(), "UTC")
    await notifier.start()
    sent: list[float] = []
    ledger = QuotaLedger(quotas, store, policy=state.policy, on_crossing=notifier.crossed)
    for team in teams:
        sent.append(time.perf_counter())
        await ledger.reserve(Identity("bench", team), request_cost(1, 0.02))
        while len(arrived) < len(sent):  # noqa: ASYNC110 - the receiver is another thread
            await asyncio.sleep(0.0005)
    await notifier.close()
    server.shutdown()
    return [(a - s) * 1000 for s, a in zip(sent, sorted(arrived.values()), strict=True)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.alerts", description=__doc__)
    parser.add_argument("--crossings", type=int, default=200)
    args = parser.parse_args(argv)
    latencies = sorted(asyncio.run(measure(args.crossings)))
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"alert latency over {len(latencies)} crossings: p50 {statistics.median(latencies):.2f} ms,"
        f" p99 {p99:.2f} ms, max {latencies[-1]:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
