"""Instructions per request (issue 27): callgrind around the proxy process, a count that
does not move with the load on the box the way CPU time does.

For each proxy (`nginx`, `naive`, `stack`, the gateway) a second instance is started
on its own port under `valgrind --tool=callgrind`, in front of the session's fake upstream
(and Redis). Per image size: `--counts-warmup` requests, the counters zeroed
(`callgrind_control -z`), `--counts` requests one after the other (concurrency 1, from the
bench process with httpx: the client is not counted), the counters dumped
(`callgrind_control -d`); the dump's `summary` is the proxy's instructions over those
requests. `gateway` sends a different image in every request (a miss, through the cache
lookup and the bid to lead), `gateway-nostore` too but with `Cache-Control: no-store` (the
cache bypassed: no hashing, as with the cache off), `gateway-hit` the same one (after the
first, a hit); every answer must be 200 with that `x-gateway-cache`, as in the CPU-time
matrix.

What the counts leave out or weigh differently, and how the cell handles it:

- valgrind's virtual CPU has no SHA extensions (nor AVX-512): OpenSSL's SHA-256 runs its
  AVX2 code there, about 28 instructions a byte where the real CPU's SHA-NI spends a
  fraction of that in time. The cell therefore counts the hash libraries apart (the
  instructions in libcrypto, blake3 and hashlib's blake2, by object file, from
  `callgrind_annotate`) and reports the count without them too; `bench.hashes` measures
  the hashes natively beside it.
- glibc's memcpy and memset use `rep movsb` / `rep stosb` from 2 KiB to a few MiB, and
  valgrind counts one instruction per byte of them. The processes get `GLIBC_TUNABLES`
  raising both thresholds out of reach, so a copy counts what glibc's vector loop executes
  (about 0.09 instructions a byte). Counts still under-weigh memory traffic: copies cost
  more in time than in instructions; the CPU-time matrix is the judge of those.
- Kernel work (socket reads and writes, page faults) is not counted at all: nginx, which
  leaves the copying to the kernel, counts almost nothing per byte.
- `PYTHONHASHSEED=0`, so dict layouts (and their probe counts) repeat from run to run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, NamedTuple

import httpx

from bench import procs
from bench.images import BenchImage, with_unique_chunk
from bench.nginx import start_nginx
from bench.session import EXPECTED_CACHE, EXTRA_HEADERS, UNIQUE_IMAGE

TARGETS = ("nginx", "naive", "stack", "gateway", "gateway-nostore", "gateway-hit")
GATEWAY_TARGETS = ("gateway", "gateway-nostore", "gateway-hit")
# Past any size a memcpy or memset of the gateway reaches: glibc's vector loops throughout.
TUNABLES = (
    "glibc.cpu.x86_rep_movsb_threshold=4294967295:glibc.cpu.x86_rep_stosb_threshold=4294967295"
)
HASH_OBJECTS = re.compile(r"libcrypto|blake3|_blake2|_sha256|_hashlib")
READY_SECONDS = 600.0  # a Python server imports its stack 20-50 times slower under valgrind
REQUEST_SECONDS = 300.0
COPY_FUNCTIONS = re.compile(r":__(memcpy|memmove|memset|mempcpy)_")
_ANNOTATED = re.compile(r"^\s*([\d,]+) \([ \d.]+%\)\s+(\S.*) \[(.+)\]\s*$")
Part = Literal["all", "hash", "copies", "no hash"]
Send = Callable[[bool], httpx.Response]  # one request; True: a fresh image (a miss)


class Count(NamedTuple):
    """One instruction-count cell: a target at an image size, over `requests` requests."""

    target: str
    size: str
    png_bytes: int
    requests: int
    instructions: int  # in the proxy process over the requests
    hash_instructions: int  # of those, in the hash libraries
    copy_instructions: int  # of those, in glibc's memcpy, memmove and memset

    def per_request(self, part: Part = "all") -> float:
        """Instructions per request: all, the hash's, the copies', or all but the hash."""
        count = {
            "all": self.instructions,
            "hash": self.hash_instructions,
            "copies": self.copy_instructions,
            "no hash": self.instructions - self.hash_instructions,
        }[part]
        return count / self.requests if self.requests else 0.0


class CountFailed(RuntimeError):
    """A request of a count cell was not answered as its target must answer."""


def find_valgrind() -> str | None:
    """valgrind and callgrind_control, or None if either is missing."""
    if shutil.which("callgrind_control") is None:
        return None
    return shutil.which("valgrind")


def _wrap(valgrind: str, out: Path, name: str, vector_copies: bool) -> procs.Wrap:
    prefix = (valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-line=no")
    env: tuple[tuple[str, str], ...] = (("PYTHONHASHSEED", "0"),)
    if vector_copies:
        env += (("GLIBC_TUNABLES", TUNABLES),)
    return procs.Wrap(prefix, env, f"-callgrind-{name}", READY_SECONDS)


def _control(option: str, pid: int) -> None:
    subprocess.run(
        ["callgrind_control", option, str(pid)], check=True, capture_output=True, timeout=120
    )


def _newest_dump(out: Path, before: set[Path]) -> Path:
    """The dump file `callgrind_control -d` just wrote (`out`.N), waited for briefly."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fresh = set(out.parent.glob(out.name + ".*")) - before
        done = [path for path in fresh if "totals:" in path.read_text(errors="replace")]
        if done:
            return max(done, key=lambda path: path.stat().st_mtime)
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no dump next to {out}")


def summary(dump: Path) -> int:
    """The instructions a callgrind dump counted (its `summary:` line)."""
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise ValueError(f"{dump}: no summary line")


def shares(dump: Path) -> tuple[int, int]:
    """The instructions of a dump spent in the hash libraries (by object file) and in
    glibc's copies (by function)."""
    annotated = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--inclusive=no", str(dump)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    hashing = copying = 0
    for line in annotated.splitlines():
        found = _ANNOTATED.match(line)
        if found is None:
            continue
        count = int(found.group(1).replace(",", ""))
        if HASH_OBJECTS.search(Path(found.group(3)).name):
            hashing += count
        elif COPY_FUNCTIONS.search(found.group(2)):
            copying += count
    return hashing, copying


def measure(pid: int, out: Path, send: Callable[[], object], warmup: int, requests: int) -> Path:
    """Warm up, zero the counters, send `requests`, dump: the dump file of those requests."""
    for _ in range(warmup):
        send()
    _control("-z", pid)
    before = set(out.parent.glob(out.name + ".*"))
    for _ in range(requests):
        send()
    _control("-d", pid)
    return _newest_dump(out, before)


def _sender(client: httpx.Client, url: str, key: str, image: BenchImage, target: str) -> Send:
    headers = {"authorization": f"Bearer {key}", "content-type": image.content_type}
    for header in EXTRA_HEADERS.get(target, ()):
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    expected = EXPECTED_CACHE.get(target)
    counter = iter(range(10**9))

    def send(fresh: bool) -> httpx.Response:
        body = with_unique_chunk(image.body, f"cg{next(counter)}") if fresh else image.body
        answer = client.post(url, content=body, headers=headers)
        cache = answer.headers.get("x-gateway-cache")
        if answer.status_code != 200 or (expected and cache != expected):
            raise CountFailed(
                f"{target} {image.label}: HTTP {answer.status_code}, x-gateway-cache {cache} "
                f"(expected {expected}): {answer.text[:300]}"
            )
        return answer

    return send


class _Where(NamedTuple):
    """A proxy under callgrind: the client to it, its pid, port and dump file's name."""

    client: httpx.Client
    pid: int
    port: int
    out: Path


class Counter:
    """The count cells of one run: each proxy started under callgrind in turn."""

    def __init__(
        self,
        valgrind: str,
        work: Path,
        upstream_port: int,
        redis_url: str | None,
        nginx: str | None,
        *,
        vector_copies: bool = True,
        tracing: bool = False,
    ) -> None:
        self.valgrind, self.work, self.upstream_port = valgrind, work, upstream_port
        self.redis_url, self.nginx, self.vector_copies = redis_url, nginx, vector_copies
        self.tracing = tracing  # the gateway traced, its export thread counted too

    @contextmanager
    def _proxy(self, target: str) -> Iterator[tuple[procs.Popen, int, Path]]:
        """The proxy serving `target` under callgrind, its port and its dump file's name."""
        name = "gateway" if target in EXPECTED_CACHE else target
        out = self.work / f"callgrind-{name}.out"
        for old in self.work.glob(out.name + "*"):
            old.unlink()
        wrap, port = _wrap(self.valgrind, out, name, self.vector_copies), procs.free_port()
        if target == "nginx":
            assert self.nginx is not None
            proc = start_nginx(self.nginx, port, self.upstream_port, self.work, wrap)
        elif target == "naive":
            proc = procs.start_naive(port, self.upstream_port, self.work, wrap)
        elif target == "stack":
            assert self.redis_url is not None
            proc = procs.start_stack(port, self.upstream_port, self.redis_url, self.work, wrap)
        else:
            if self.tracing:
                wrap = wrap._replace(env=wrap.env + procs.traced(self.upstream_port).env)
            proc, _ = procs.launch_gateway(
                port,
                self.upstream_port,
                self.work,
                quotas=procs.UNREFUSING_QUOTAS,
                cache={"enabled": True},
                redis_url=self.redis_url,
                name="gateway-callgrind",
                wrap=wrap,
            )
        try:
            yield proc, port, out
        finally:
            procs.stop(proc)

    def run(
        self,
        targets: Sequence[str],
        images: Sequence[BenchImage],
        requests: int,
        warmup: int,
        report: Callable[[Count], None] = lambda count: None,
    ) -> list[Count]:
        """Every count cell of `targets` x `images`; the gateway's two targets share one
        process. `report` is called with each cell as it is measured."""
        counts: list[Count] = []
        groups = [[t] for t in ("nginx", "naive", "stack") if t in targets]
        groups += [[t for t in GATEWAY_TARGETS if t in targets]]
        for group in filter(None, groups):
            with self._proxy(group[0]) as (proc, port, out):
                client = httpx.Client(timeout=REQUEST_SECONDS)
                with client:
                    for image in images:
                        for target in group:
                            where = _Where(client, proc.pid, port, out)
                            counts.append(self._cell(where, target, image, requests, warmup))
                            report(counts[-1])
        return counts

    def _cell(
        self, where: _Where, target: str, image: BenchImage, requests: int, warmup: int
    ) -> Count:
        key = procs.BENCH_KEY if target in EXPECTED_CACHE else procs.UPSTREAM_KEY
        url = f"http://127.0.0.1:{where.port}/v1/images/variations"
        send = _sender(where.client, url, key, image, target)
        fresh = target in UNIQUE_IMAGE  # a new image each time, as in the matrix
        if target == "gateway-hit":  # the first may be the miss that fills the cache
            _fill(send)
        dump = measure(where.pid, where.out, lambda: send(fresh), warmup, requests)
        png = len(image.png)
        return Count(target, image.label, png, requests, summary(dump), *shares(dump))


def _fill(send: Send) -> None:
    try:
        send(False)
    except CountFailed:
        send(False)
