"""The command-line callers the end-to-end tests run: node (with the openai npm package) and
curl."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parents[1] / "e2e" / "node"


def need(tool: str) -> str:
    """The tool's path; a missing tool skips on a laptop but fails in CI."""
    found = shutil.which(tool)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is required in CI")
        pytest.skip(f"{tool} not installed")
    return found
