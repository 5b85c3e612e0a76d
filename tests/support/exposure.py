"""Everything the gateway showed the world during the test run, kept for one secret scan.

Live gateways write their logs under the run's temporary directory; the in-process app's
log lines, the error bodies callers received and every live gateway's last /metrics are
appended here (tests/conftest.py wires it). The scan (tests/faults/test_secret_scan.py,
run last) looks through all of it for keys, secrets, tokens and signed URLs.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from support.config import KEYS, UPSTREAM_KEY, USER_SECRET

_lock = threading.Lock()
_path: Path | None = None

# Literal secrets the tests configure, and shapes of secrets minted during the run.
LITERALS = (*KEYS.values(), UPSTREAM_KEY, USER_SECRET, "scrape-secret")
PATTERNS = {
    "gateway key": re.compile(r"gwk_[A-Za-z0-9_\-]{16,}"),
    "OpenAI-style key": re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    "JWT": re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\."),
    "signed URL": re.compile(r"[?&](sig|X-Amz-Signature|token)=[A-Za-z0-9%_\-]{4,}", re.I),
    "hosted-file token": re.compile(r"/files/[A-Za-z0-9_\-]{20,}"),
}
# Printed on purpose: `gateway serve --demo-key` shows the demo keys it accepts.
ALLOWED_LINES = re.compile(r"^demo (admin )?key: gwk_\S+$", re.M)


def start(path: Path) -> None:
    """Record into `path` from now on."""
    global _path
    _path = path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def record(origin: str, content: str | bytes) -> None:
    """Keep `content` (a log, an error body, a metrics page) for the scan."""
    if _path is None or not content:
        return
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    with _lock, _path.open("a", encoding="utf-8") as out:
        out.write(f"--- {origin}\n{text}\n")


def recorded() -> Path | None:
    """The file recorded into, if recording."""
    return _path


def secrets_in(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    """What in `text` looks like a secret: configured literals, `extra`, or secret shapes."""
    text = ALLOWED_LINES.sub("", text)
    found = [f"literal {s[:6]}..." for s in (*LITERALS, *extra) if s and s in text]
    for name, pattern in PATTERNS.items():
        found += [f"{name}: {m.group()[:24]}..." for m in pattern.finditer(text)]
    return found
