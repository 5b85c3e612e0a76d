"""End-to-end fixtures: a live gateway process on loopback in front of the fake upstream."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from support.browser import headless_chromium
from support.config import base_config
from support.fake_upstream import FakeUpstream
from support.servers import GatewayProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.e2e


@pytest.fixture
def live(start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream) -> GatewayProcess:
    """`gateway serve` forwarding to the fake upstream."""
    return start_gateway(base_config(upstream.url))


@pytest.fixture
def live_sandbox(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    """`gateway serve` on the built-in sandbox upstream."""
    return start_gateway({**base_config("sandbox")})


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, shared by a module's console tests (each test opens
    its own context)."""
    with headless_chromium() as launched:
        yield launched
