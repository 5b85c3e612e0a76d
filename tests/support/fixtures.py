"""The types of the shared fixtures that hand out factories, for annotating test parameters."""

from __future__ import annotations

from typing import Any, Protocol

from starlette.testclient import TestClient


class AppFactory(Protocol):
    """`make_client`: the app in-process from config overrides and extra environment."""

    def __call__(
        self, overrides: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> TestClient: ...
