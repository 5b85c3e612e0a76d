"""Fixtures of the deployment tests: the Kubernetes overlays, rendered once per session."""

from __future__ import annotations

import pytest
from support.k8s_files import OVERLAYS, Docs, render, require_kustomize


@pytest.fixture(scope="session")
def rendered() -> dict[str, Docs]:
    """Every overlay's manifests, as kustomize renders them (skips, or fails in CI, without it)."""
    tool = require_kustomize()
    return {name: render(path, tool) for name, path in OVERLAYS.items()}
