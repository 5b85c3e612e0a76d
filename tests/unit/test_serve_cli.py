"""`gateway serve` before it starts: a taken port, image URLs nobody can open."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from support.serve import serve_until_uvicorn

from gateway.server.preflight import base_url

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = str(ROOT / "config" / "gateway.yaml")
EDITS = str(ROOT / "config" / "gateway.edits.example.yaml")
UNREACHABLE = "no caller can open"
# The wildcard address is what these tests are about; nothing listens on it for long.
WILDCARD = "0.0.0.0"  # noqa: S104


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No public URL, demo key or config of the developer's shell."""
    for name in ("GATEWAY_PUBLIC_URL", "GATEWAY_DEMO_KEY", "GATEWAY_CONFIG", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


def test_taken_port_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port another process listens on stops serve with exit 2 and a hint (another port
    via PORT or --port), instead of uvicorn's bare Errno 98."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        options = serve_until_uvicorn(
            monkeypatch, "--config", SANDBOX, "--host", "127.0.0.1", "--port", str(port)
        )
    assert options is None
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert f"make run PORT={port + 1}" in err
    assert "Errno" not in err


def test_free_port_starts_uvicorn_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the port free, serve hands uvicorn the host and port it was given."""
    options = serve_until_uvicorn(monkeypatch, "--config", SANDBOX, "--port", "0")
    assert options is not None
    assert (options["host"], options["port"]) == ("127.0.0.1", 0)


@pytest.mark.parametrize("config", [SANDBOX, EDITS])
def test_wildcard_host_without_public_url_is_warned(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], config: str
) -> None:
    """`--host 0.0.0.0` with the sandbox or the edits adapter and no GATEWAY_PUBLIC_URL warns
    that the image URLs will name 0.0.0.0, and says what to set."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GATEWAY_USER_SECRET", "s")
    assert serve_until_uvicorn(monkeypatch, "--config", config, "--host", WILDCARD, "--port", "0")
    err = capsys.readouterr().err
    assert "http://0.0.0.0:0/files/..." in err
    assert UNREACHABLE in err
    assert "Set GATEWAY_PUBLIC_URL" in err


@pytest.mark.parametrize(
    ("config", "host", "public_url"),
    [
        (SANDBOX, WILDCARD, "http://gw.example:8080"),  # told where callers reach it
        (SANDBOX, "127.0.0.1", None),  # the serve address is reachable
    ],
)
def test_reachable_image_urls_are_not_warned(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    config: str,
    host: str,
    public_url: str | None,
) -> None:
    """A public URL, or a concrete host, gives image URLs callers can open: no warning."""
    if public_url:
        monkeypatch.setenv("GATEWAY_PUBLIC_URL", public_url)
    assert serve_until_uvicorn(monkeypatch, "--config", config, "--host", host, "--port", "0")
    assert UNREACHABLE not in capsys.readouterr().err


def test_variations_adapter_serves_no_images_so_is_not_warned(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A real upstream through the variations adapter hands out OpenAI's own URLs: no warning."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GATEWAY_USER_SECRET", "s")
    config = tmp_path / "real.yaml"
    config.write_text("upstream: {base_url: https://api.openai.com/v1}\nquotas: {}\n")
    assert serve_until_uvicorn(
        monkeypatch, "--config", str(config), "--host", WILDCARD, "--port", "0"
    )
    assert UNREACHABLE not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("::1", "http://[::1]:8080"),
        ("gw", "http://gw:8080"),
    ],
)
def test_default_public_url_is_a_valid_url(host: str, url: str) -> None:
    """The default public URL (the serve address) brackets an IPv6 address."""
    assert base_url(host, 8080) == url
