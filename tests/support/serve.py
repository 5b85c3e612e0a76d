"""`gateway serve` run up to the moment it would hand over to uvicorn.

uvicorn itself is replaced (starting a server is what the e2e tests do); what is kept is
everything `serve` decides first: its exit code, its messages and the options it passes.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import uvicorn

from gateway.__main__ import main


def serve_until_uvicorn(monkeypatch: pytest.MonkeyPatch, *argv: str) -> dict[str, Any] | None:
    """Run `gateway serve argv`; the options it gave `uvicorn.run`, or None if it stopped
    before (its exit code is then asserted non-zero)."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    # serve writes the workers' environment and malloc settings into this process.
    monkeypatch.setattr(os, "environ", dict(os.environ))
    monkeypatch.setattr("gateway.server.serve.tune_malloc", lambda env: None)
    code = main(["serve", *argv])
    if not seen:
        assert code != 0
        return None
    assert code == 0
    return seen
