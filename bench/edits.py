"""Issue 28's goal: the gateway's CPU per request for an edit (`POST /v1/images/edits`, one
image and a prompt) against a variation of the same image, at concurrency 1 and zero upstream
latency (the bench's fake upstream), each image made unique (a miss, hashed for the cache).

    python -m bench.edits [--size 1m] [--requests 200] [--rounds 3]

Prints the proxy CPU ms per request of each, round by round (alternating, on one gateway
process), and the edit's ratio to the variation's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from bench import procs
from bench.images import build_image, unique_parts

MODELS = {
    "edits": {
        "model": "gpt-image-2",
        "prices": {
            "gpt-image-2": {
                "text_input_per_1m_tokens": 5.0,
                "image_input_per_1m_tokens": 8.0,
                "image_output_per_1m_tokens": 30.0,
                "output_tokens": {"1024x1024": {"low": 196, "medium": 1767, "high": 7024}},
            }
        },
    }
}
BOUNDARY = "bench-edits-boundary"


def edit_body(png: bytes) -> bytes:
    """An edits body as the python SDK writes it: the prompt, then the image."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nadd a hat\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="image.png"'
        "\r\nContent-Type: image/png\r\n\r\n"
    )
    return head.encode() + png + f"\r\n--{BOUNDARY}--\r\n".encode()


def cpu_ms_per_request(pid: int, send: Callable[[str], httpx.Response], count: int) -> float:
    """The gateway's CPU ms per request over `count` sequential unique requests."""
    before = procs.cpu_seconds(pid)
    for _ in range(count):
        response = send(uuid.uuid4().hex)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text[:200]}")
    return (procs.cpu_seconds(pid) - before) * 1000 / count


def measure(port: int, pid: int, size: str, requests: int, rounds: int) -> dict[str, list[float]]:
    """CPU ms per request of variations and edits of one `size` image, round by round."""
    image = build_image(size)
    edit = edit_body(image.png)
    url = f"http://127.0.0.1:{port}/v1/images/"
    variation_type = (
        "multipart/form-data; boundary=" + image.body[2 : image.body.index(b"\r\n")].decode()
    )
    senders = {
        "variation": (url + "variations", image.body, variation_type),
        "edit": (url + "edits", edit, f"multipart/form-data; boundary={BOUNDARY}"),
    }
    rows: dict[str, list[float]] = {name: [] for name in senders}
    headers = {"Authorization": f"Bearer {procs.BENCH_KEY}"}
    with httpx.Client(headers=headers, timeout=30) as client:

        def sender(name: str) -> Callable[[str], httpx.Response]:
            target, body, kind = senders[name]
            return lambda tag: client.post(
                target, content=b"".join(unique_parts(body, tag)), headers={"content-type": kind}
            )

        for name in senders:
            cpu_ms_per_request(pid, sender(name), 20)  # warm-up
        for round_ in range(rounds):
            for name in senders:
                rows[name].append(cpu_ms_per_request(pid, sender(name), requests))
            print(
                f"round {round_ + 1}: " + ", ".join(f"{n} {r[-1]:.3f} ms" for n, r in rows.items())
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.edits", description=__doc__)
    parser.add_argument("--size", default="1m")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-edits-"))
    upstream_port, port = procs.free_port(), procs.free_port()
    upstream = procs.start_upstream(upstream_port, 0.0, work)
    gateway, _ = procs.launch_gateway(port, upstream_port, work, upstream=MODELS)
    try:
        rows = measure(port, gateway.pid, args.size, args.requests, args.rounds)
    finally:
        procs.stop(gateway)
        procs.stop(upstream)
    varied, edited = statistics.median(rows["variation"]), statistics.median(rows["edit"])
    print(
        f"{args.size} c=1, median of {args.rounds} x {args.requests}: variation {varied:.3f} ms "
        f"CPU/request, edit {edited:.3f} ms; edit/variation {edited / varied:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
