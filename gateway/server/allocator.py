"""Process tuning for `gateway serve`: glibc's malloc keeps large buffers for reuse.

Every upload is a few MB held briefly: its received chunks, then the image joined from them.
With glibc's defaults a buffer that large is mmap'ed and unmapped again, or, once glibc's
adaptive threshold has risen, carved from a heap whose top is trimmed back to the OS when
it is freed; either way the next request page-faults the same megabytes in again. On the
reference machine that was 2-3 ms of CPU per 3.9 MB request (bench/README.md, issue 8).
Above both thresholds set here, freed memory stays in the heap for the next upload.

`MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_` set by the operator win. Workers
that uvicorn spawns read them from the environment when they start; the serving process
itself is already running and is told through `mallopt`. Without glibc, nothing happens.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import MutableMapping

# Over the largest buffer a request holds (a 4 MiB image).
MMAP_THRESHOLD = 16 * 2**20
# Free heap kept for reuse before any is returned to the OS.
TRIM_THRESHOLD = 64 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>


def _glibc() -> ctypes.CDLL | None:
    with contextlib.suppress(AttributeError, ValueError, OSError):
        if os.confstr("CS_GNU_LIBC_VERSION"):
            return ctypes.CDLL(None)
    return None


def tune_malloc(env: MutableMapping[str, str]) -> None:
    """Set the thresholds in `env` (for spawned workers) unless set, and in this process."""
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD))
    env.setdefault("MALLOC_TRIM_THRESHOLD_", str(TRIM_THRESHOLD))
    libc = _glibc()
    if libc is None:
        return
    with contextlib.suppress(ValueError):  # the operator's value, if it is not a number
        libc.mallopt(_M_MMAP_THRESHOLD, int(env["MALLOC_MMAP_THRESHOLD_"]))
    with contextlib.suppress(ValueError):
        libc.mallopt(_M_TRIM_THRESHOLD, int(env["MALLOC_TRIM_THRESHOLD_"]))
