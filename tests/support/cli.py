"""The admin CLI as an operator runs it: `gateway ...` as a subprocess with the test
admin's key, its exit code and what it wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from support.config import KEYS


class Run(NamedTuple):
    """One CLI run: its exit code and what it wrote."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return orjson.loads(self.out)


def cli(url: str, *args: str, cwd: Path | None = None) -> Run:
    """`gateway args --url url` with the test admin's key, as a subprocess."""
    env = {"GATEWAY_ADMIN_KEY": KEYS["grafana"], "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--url", url],
        env=env, capture_output=True, text=True, timeout=30, cwd=cwd, check=False,
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr)


def refused(run: Run) -> str:
    """The one line a refusal writes (asserting exit 2, one line, no traceback)."""
    assert run.code == 2, run
    assert run.err.count("\n") == 1 and "Traceback" not in run.err, run.err
    return run.err
